"""The MLX runtime, on mlx-lm: Metal on Apple silicon, the CPU elsewhere (the `mlx[cpu]` wheel).

An MLX model is a folder (config.json, *.safetensors, tokenizer). Its KV cache is mlx-lm's prompt
cache: `trim_prompt_cache` rolls it back, and a conversation's state is mlx-lm's safetensors format,
kept in memory as bytes so the engine's state cache treats it like llama.cpp's.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from basics.errors import InvalidRequestError, LanternError, ModelLoadError
from runtimes.mlx_slots import MlxFailure, MlxSlotsMixin
from runtimes.runtime import LoadOptions, SpecialTokens, check_forward, check_token_ids

log = logging.getLogger("lantern.mlx")

MAX_DEFAULT_CTX = 8192
# llama.cpp ends generation on these special tokens too, whatever the model's EOS id says
# (llama-vocab.cpp: end-of-turn texts, and fill-in-the-middle pad / repo / file separators).
END_OF_TURN_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "<|end_of_text|>",
    "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|repo_name|>", "<reponame>", "<|file_sep|>",
})


# mlx-lm cache kinds whose trim() always works.
ALWAYS_TRIMMABLE = frozenset({"KVCache", "QuantizedKVCache", "ConcatenateKVCache", "ChunkedKVCache"})
# Recurrent states and sliding windows cannot be cut back, but each pass of several tokens (a draft's verification)
# keeps a mark of them first: a rejected draft returns to the mark and computes its accepted tokens again.
MARK_ROLLBACK_TOKENS = 18  # drafts of up to 16 tokens, as on a plain model


def check_mlx_folder(path: Path) -> None:
    """Reject what mlx-lm should never see; a missing path must never turn into a Hub download."""
    if not path.exists():
        raise ModelLoadError(f"Model folder not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; an MLX model is a folder with config.json and .safetensors "
                             "files (a .gguf file runs on the llama.cpp backend).")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json, so it is not an MLX model folder.")
    if not list(path.glob("model*.safetensors")):
        raise ModelLoadError(f"{path} has no model*.safetensors weights.")


def _seq0(per_seq: str) -> property:
    """Sequence 0's item of the list attribute `per_seq`, as an attribute of its own."""
    return property(lambda self: getattr(self, per_seq)[0],
                    lambda self, value: getattr(self, per_seq).__setitem__(0, value))


class MlxRuntime(MlxSlotsMixin):
    """One MLX model folder; one mlx-lm prompt cache per sequence: seq 0 through the Runtime interface, and up to
    `options.slots` through runtimes/mlx_slots.py."""

    name = "mlx"
    on_gpu = False  # set at load: Metal on Apple silicon

    def __init__(self, path: str | Path, options: LoadOptions = LoadOptions()):
        options.validate()
        if options.slots < 1:
            raise ModelLoadError("The slot count must be chosen before a model loads (app/wiring.py chooses for 0).")
        _reject_llamacpp_only(options)
        self.model_path = Path(path)
        check_mlx_folder(self.model_path)
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        import mlx.core as mx
        from mlx_lm import load
        from mlx_lm.models.cache import make_prompt_cache

        self._mx = mx
        try:  # never trust_remote_code: a downloaded folder must not run its own Python
            self._model, self._tokenizer, config = load(str(self.model_path), return_config=True)
        except (ValueError, KeyError, OSError, RuntimeError, TypeError) as e:
            raise ModelLoadError(f"mlx-lm could not load {self.model_path}: {e}") from None
        self._make_cache = make_prompt_cache
        self.on_gpu = mx.default_device() == mx.gpu and mx.metal.is_available()
        self.slots = options.slots
        self._seq_caches = [make_prompt_cache(self._model) for _ in range(self.slots)]
        self._seq_pasts = [0] * self.slots
        # A rotating (sliding-window) cache is trimmable only until its window fills, so only the
        # kinds that can always roll back count: others would fail in the middle of a reply.
        fixed = sorted({type(c).__name__ for c in self._cache} - ALWAYS_TRIMMABLE)
        kinds = sorted({type(c).__name__ for c in self._cache} - {"KVCache"})
        if self.slots > 1 and kinds:
            self.close()
            raise ModelLoadError(f"Several slots run on MLX for models whose layers keep plain KV caches; this one "
                                 f"has {', '.join(kinds)} (a sliding window or a recurrent state): load it with one "
                                 "slot.")
        self.can_truncate = not fixed
        self.rollback_tokens = 0 if self.can_truncate or not all(_markable(c) for c in self._cache) \
            else MARK_ROLLBACK_TOKENS
        self._mark: _Mark | None = None
        self.load_notes = [] if self.can_truncate or self.rollback_tokens else [
            f"This model's cache ({', '.join(fixed)}) cannot be rolled back: prompt lookup is off for it, and a "
            "conversation that changes resumes from the last checkpoint before the change."]
        for note in self.load_notes:
            log.warning("%s: %s", self.model_path.name, note)
        text_config = config.get("text_config", {})
        self.n_vocab = int(config.get("vocab_size") or text_config.get("vocab_size"))
        trained = config.get("max_position_embeddings") or text_config.get("max_position_embeddings")
        self.n_ctx_train = int(trained) if trained else MAX_DEFAULT_CTX
        self.n_ctx = options.n_ctx or min(self.n_ctx_train, MAX_DEFAULT_CTX)
        if self.n_ctx > self.n_ctx_train and not options.allow_context_beyond_training:
            raise ModelLoadError(
                f"Context size {self.n_ctx} is beyond the {self.n_ctx_train} tokens this model was trained on; "
                "choose a smaller one, or allow it explicitly (--allow-long-context)."
            )
        self.n_batch = min(options.n_batch, self.n_ctx)
        self._tok = _Tokens(self._tokenizer, self.model_path)
        self.special = self._tok.special(self._tokenizer, self.n_vocab)
        self.chat_template = self._tok.chat_template(self._tokenizer)

    # -- tokens -------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return self._n_past

    # The Runtime interface's one sequence is seq 0.
    _cache = _seq0("_seq_caches")
    _n_past = _seq0("_seq_pasts")

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool = True) -> list[int]:
        if len(text) >= 1 << 30:
            raise InvalidRequestError("Text too long to tokenize.")
        ids = self._tok.encode(text, parse_special=parse_special)
        if add_bos and self.special.add_bos and self.special.bos is not None:  # as llama.cpp: if the model wants it
            ids = [self.special.bos, *ids]
        return ids

    def token_bytes(self, token: int) -> bytes:
        check_token_ids([token], self.n_vocab)
        return self._tok.token_bytes(int(token))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    # -- the KV cache ---------------------------------------------------------------------------

    def forward(self, tokens: Sequence[int], start: int, *, rows: Sequence[int] | None = None) -> np.ndarray:
        rows = check_forward(self, tokens, start, rows)
        tokens = [int(t) for t in tokens]
        if self.slots > 1:
            self._check_room(len(tokens))  # the other slots' tokens count too
        if self.rollback_tokens and len(tokens) > 1:
            # a verification (or a prefill) that may be taken back; not single tokens: a mark keeps the old state
            # alive, so each step would copy it (a sliding window's ring buffer, a recurrent state) to write the next
            self._mark = _Mark(start, tokens, [_snapshot(c) for c in self._cache])
        try:
            return self._forward_seq(0, tokens, rows)
        except LanternError:
            self._roll_back()
            raise
        except (RuntimeError, ValueError) as e:
            self._roll_back()
            raise MlxFailure(f"MLX failed to process the tokens: {e}") from None
        except BaseException:
            self._roll_back()
            raise

    def _forward_seq(self, seq: int, tokens: list[int], rows: list[int]) -> np.ndarray:
        """Append `tokens` to sequence `seq`'s cache (checked before), in n_batch chunks; the logits of `rows`."""
        mx = self._mx
        cache, start = self._seq_caches[seq], self._seq_pasts[seq]
        first = min(rows)
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        where = {r: i for i, r in enumerate(rows)}
        # Rows before the first wanted one only fill the cache: MLX is lazy, so their logits
        # (n x vocab floats) are never computed.
        for lo in range(0, first, self.n_batch):
            hi = min(lo + self.n_batch, first)
            self._model(mx.array([tokens[lo:hi]]), cache=cache)
            mx.eval([c.state for c in cache])
            self._seq_pasts[seq] = start + hi
        for lo in range(first, len(tokens), self.n_batch):
            hi = min(lo + self.n_batch, len(tokens))
            wanted = [r for r in range(lo, hi) if r in where]
            logits = self._model(mx.array([tokens[lo:hi]]), cache=cache)[0]
            picked = logits[mx.array([r - lo for r in wanted])].astype(mx.float32)
            mx.eval(picked, [c.state for c in cache])
            out[[where[r] for r in wanted]] = np.array(picked, copy=False)
            self._seq_pasts[seq] = start + hi
        return out

    def _roll_back(self) -> None:
        """Bring every layer's cache back to n_past after a failed pass (some layers may have moved)."""
        if not self.can_truncate:
            mark = self._mark
            if mark is not None and mark.start == self._n_past:
                self._return_to(mark)
            else:
                self.reset()
            return
        for c in self._cache:
            if c.size() > self._n_past:
                c.trim(c.size() - self._n_past)

    def truncate(self, n_keep: int) -> bool:
        if n_keep < 0:
            raise InvalidRequestError("truncate() needs n_keep >= 0.")
        if n_keep >= self._n_past:
            return True
        if not self.can_truncate:
            if n_keep == 0:  # emptied: always possible
                self.reset()
                return True
            return self._back_to_mark(n_keep)
        for c in self._cache:
            c.trim(self._n_past - n_keep)
        self._n_past = n_keep
        return True

    def _back_to_mark(self, n_keep: int) -> bool:
        """Within the last pass: back to the mark before it, then its first tokens again, up to `n_keep`."""
        mark = self._mark
        if mark is None or not mark.start <= n_keep < mark.start + len(mark.tokens) \
                or self._n_past - n_keep > self.rollback_tokens:
            return False
        self._return_to(mark)
        again = mark.tokens[: n_keep - mark.start]
        if again:
            self.forward(again, mark.start, rows=[len(again) - 1])
        return True

    def _return_to(self, mark: "_Mark") -> None:
        for c, saved in zip(self._cache, mark.saved):
            if saved is None:  # a cache that trims exactly
                c.trim(c.offset - mark.start)
            else:
                c.state = saved
        self._n_past = mark.start
        self._mark = None

    def reset(self) -> None:
        self._cache = self._make_cache(self._model)
        self._n_past = 0
        self._mark = None

    def save_state(self) -> bytes:
        return self._save(self._cache, self._n_past)

    @staticmethod
    def _save(cache: list, n_past: int) -> bytes:
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        from mlx_lm.models.cache import save_prompt_cache

        buf = io.BytesIO()
        save_prompt_cache(buf, [_trimmed(c, n_past) for c in cache], {"n_tokens": str(n_past)})
        return buf.getvalue()

    def restore_state(self, data: bytes, n_tokens: int) -> None:
        if not 0 < n_tokens <= self.n_ctx:
            raise InvalidRequestError(f"A saved state of {n_tokens} tokens does not fit the context of {self.n_ctx}.")
        self.reset()
        if self.slots > 1:
            self._check_room(n_tokens)
        self._cache = self._load(data, n_tokens)
        self._n_past = n_tokens
        self._mark = None

    def _load(self, data: bytes, n_tokens: int) -> list:
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        from mlx_lm.models.cache import load_prompt_cache

        try:
            buf = io.BytesIO(bytes(data))
            buf.name = "state.safetensors"  # mx.load picks the format by the file name
            cache, meta = load_prompt_cache(buf, return_metadata=True)
        except (RuntimeError, ValueError, KeyError) as e:
            raise MlxFailure(f"The saved MLX state cannot be read: {e}") from None
        if len(cache) != len(self._cache) or meta.get("n_tokens") != str(n_tokens) \
                or [type(c) for c in cache] != [type(c) for c in self._cache]:
            raise MlxFailure("The saved MLX state does not belong to this model or holds another number of tokens.")
        return cache

    parks_its_thread = True  # the thread that ran it must not end (engine/worker.py: park_thread)

    def close(self) -> None:
        # Nothing of MLX's may still be computing or referenced when the interpreter ends: a lazy array freed
        # during finalization, after MLX's own threads, aborts the process ("terminate called...").
        self._mark = None
        self._seq_caches = [[] for _ in self._seq_caches]
        self._model = None
        self._mx.synchronize()
        self._mx.clear_cache()


class _Mark:
    """The caches as they were before a pass of several tokens (references: MLX arrays are values, and the copies
    of a ring buffer that is written in place are lazy, computed only if the mark is used)."""

    def __init__(self, start: int, tokens: list[int], saved: list):
        self.start, self.tokens, self.saved = start, list(tokens), saved


def _markable(cache) -> bool:
    # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
    from mlx_lm.models.cache import ArraysCache, RotatingKVCache

    return type(cache).__name__ in ALWAYS_TRIMMABLE or isinstance(cache, (ArraysCache, RotatingKVCache))


def _snapshot(cache):
    """What a mark keeps of one layer's cache: nothing for one that trims exactly; else its state, copying arrays
    that the next pass writes into in place (a sliding window's ring buffer)."""
    # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
    from mlx_lm.models.cache import ArraysCache, RotatingKVCache
    import mlx.core as mx

    if type(cache).__name__ in ALWAYS_TRIMMABLE:
        return None
    if isinstance(cache, RotatingKVCache):
        keys, values, *rest = cache.state if cache.keys is not None else (None, None, cache.offset, cache.keep,
                                                                          cache.max_size, cache._idx)
        return (None if keys is None else mx.array(keys), None if values is None else mx.array(values), *rest)
    if isinstance(cache, ArraysCache):
        return list(cache.cache), cache.left_padding, cache.lengths
    raise AssertionError(type(cache).__name__)


def _trimmed(cache, n: int):
    """A KVCache holds room for 256 more tokens: save only the `n` that are used."""
    # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
    from mlx_lm.models.cache import KVCache

    if type(cache) is not KVCache or cache.keys is None:
        return cache
    copy = KVCache()
    copy.keys, copy.values, copy.offset = cache.keys[..., :n, :], cache.values[..., :n, :], n
    return copy


def _reject_llamacpp_only(options: LoadOptions) -> None:
    """Options MLX has no use for are refused, not silently ignored."""
    if options.n_threads is not None:
        raise ModelLoadError("The MLX backend chooses its own threads; --threads is for llama.cpp.")
    if options.n_gpu_layers not in (None, 0, -1):
        raise ModelLoadError("The MLX backend keeps the whole model on one device; --n-gpu-layers is for llama.cpp.")
    if options.flash_attn:
        raise ModelLoadError("Flash attention is a llama.cpp option; MLX uses its own attention kernel.")
    if options.kv_cache_type != "f16":
        raise ModelLoadError(f"A {options.kv_cache_type} KV cache is a llama.cpp option; MLX models keep f16 (set the "
                             "KV cache type to f16 for them).")


class _Tokens:
    """Token ids <-> text for an mlx-lm tokenizer, with the raw bytes of each token (as llama.cpp gives)."""

    def __init__(self, wrapper, path: Path):
        hf = wrapper._tokenizer
        self._hf = hf
        self._raw = getattr(hf, "_tokenizer", None)  # the `tokenizers` object, when there is one
        self._added = {i: t.content for i, t in hf.added_tokens_decoder.items()}
        self._pieces: dict[int, bytes] = {}
        decoder = {}
        if self._raw is not None:
            decoder = json.loads(self._raw.to_str()).get("decoder") or {}
        kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders", []) or []]
        self._byte_level = "ByteLevel" in kinds
        self._byte_fallback = "ByteFallback" in kinds
        if self._byte_level:
            self._unbyte = {c: i for i, c in enumerate(_byte_alphabet())}
        self._config = _read_json(path / "tokenizer_config.json")

    def encode(self, text: str, *, parse_special: bool) -> list[int]:
        raw = self._raw
        if raw is None:
            return list(self._hf(text, add_special_tokens=False, split_special_tokens=not parse_special)["input_ids"])
        raw.encode_special_tokens = not parse_special  # one thread owns the model, so this flag is ours
        try:
            return raw.encode(text, add_special_tokens=False).ids
        finally:
            raw.encode_special_tokens = False

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token)
        return piece

    def _piece(self, token: int) -> bytes:
        if token in self._added:
            return self._added[token].encode("utf-8")
        text = self._raw.id_to_token(token) if self._raw is not None else None
        if text is None:  # an id past the tokenizer's vocabulary (padded embeddings) or no raw tokenizer
            return self._hf.decode([token]).encode("utf-8")
        if self._byte_level:
            return bytes(self._unbyte[c] for c in text if c in self._unbyte)
        if self._byte_fallback and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            return bytes([int(text[3:5], 16)])
        if self._byte_fallback:
            return text.replace("\u2581", " ").encode("utf-8")
        return self._hf.decode([token]).encode("utf-8")

    def special(self, wrapper, n_vocab: int) -> SpecialTokens:
        hf = self._hf
        valid = lambda t: t is not None and 0 <= t < n_vocab  # noqa: E731
        bos = hf.bos_token_id if valid(hf.bos_token_id) else None
        eos = hf.eos_token_id if valid(hf.eos_token_id) else None
        ends = {int(t) for t in (getattr(wrapper, "eos_token_ids", None) or []) if valid(t)}
        ends |= {i for i, text in self._added.items() if text in END_OF_TURN_TEXTS and valid(i)}
        if eos is not None:
            ends.add(eos)
        add_bos = self._config.get("add_bos_token")
        if add_bos is None:  # not declared: see what the tokenizer does by itself
            add_bos = bos is not None and hf.encode("a")[:1] == [bos]
        return SpecialTokens(
            bos=bos, eos=eos, end_of_turn=frozenset(ends), add_bos=bool(add_bos),
            bos_text=self._added.get(bos, "") if bos is not None else "",
            eos_text=self._added.get(eos, "") if eos is not None else "",
            control=frozenset(i for i, t in hf.added_tokens_decoder.items() if getattr(t, "special", False)),
        )

    def chat_template(self, wrapper) -> str | None:
        template = getattr(self._hf, "chat_template", None)
        if isinstance(template, dict):  # named templates: the default one
            template = template.get("default")
        return template if isinstance(template, str) and template.strip() else None


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character table, in byte order (the inverse decodes a token)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
