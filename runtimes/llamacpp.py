"""The llama.cpp runtime, on llama-cpp-python's low-level C API.

Every value is checked here before it reaches C: a GGML_ASSERT aborts the whole process,
so nothing a user sends may ever reach one.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from basics.errors import InvalidRequestError, ModelLoadError
from machine.hardware import llama_gpu_offload
from machine.threads import ThreadChooser
from runtimes.llama_library import (RECURRENT_SNAPSHOTS, RuntimeFailure, cache_sizes, check_gguf_file, cpu_has_amx,
                                    default_threads, init_backend, last_error, recent_log)
from runtimes.llama_mtp import MtpHeads, MtpUnavailable
from runtimes.llamacpp_slots import SlotsMixin
from runtimes.load_probe import verify_in_child
from runtimes.runtime import KV_CACHE_TYPES, LoadOptions, SpecialTokens, check_forward, check_token_ids
from runtimes.vision import Projector, check_projector_file

MAX_DEFAULT_CTX = 8192
EMBED_CTX = 2048  # the longest input a chat model embeds (its own context of that many tokens, made when asked)


class LlamaCppRuntime(SlotsMixin):
    """One GGUF model, one llama.cpp context; one sequence (seq 0) through the Runtime interface, and up to
    `options.slots` sequences through runtimes/llamacpp_slots.py."""

    name = "llamacpp"
    can_truncate = True
    on_gpu = False

    def __init__(self, path: str | Path, options: LoadOptions = LoadOptions(), *, verify: bool = True):
        """`verify`: a file not loaded before is first loaded in a child process (runtimes/load_probe.py)."""
        # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
        import llama_cpp as C

        self._C = C
        self.model_path = Path(path)
        options.validate()
        if options.slots < 1:
            raise ModelLoadError("The slot count must be chosen before a model loads (app/wiring.py chooses for 0).")
        check_gguf_file(self.model_path, check_header=verify)  # the test load's child runs after these checks
        if options.projector:
            check_projector_file(Path(options.projector))
        if verify:
            verify_in_child(self.model_path, options)
        init_backend()
        self._model = self._ctx = self._batch = None
        self._embed_ctx = self._embed_batch = None  # a second context, made on the first embeddings request
        self._past = [0]  # tokens in the cache, by sequence
        self._shared: dict[tuple[int, int], int] = {}
        self.vision = None  # a Projector (runtimes/vision.py) when the model was loaded with one
        self.mtp: MtpHeads | None = None  # its MTP heads, once drafting with them starts (start_mtp)
        self.options = options

        mparams = C.llama_model_default_params()
        gpu_layers = options.n_gpu_layers or 0
        mparams.n_gpu_layers = 0x7FFFFFFF if gpu_layers == -1 else gpu_layers
        self.on_gpu = gpu_layers == -1 and llama_gpu_offload()
        # ggml's AMX matmul in llama-cpp-python 0.3.36 segfaults on multi-token batches (seen on Xeons
        # with AMX, Llama() included); the extra buffer types are what route weights to it.
        mparams.use_extra_bufts = not cpu_has_amx()
        mparams.load_mtp = options.load_mtp
        if options.helpers:
            self._split = self._spread_over_helpers(mparams, options)  # kept alive: llama.cpp reads them at load
        cancelled = self._watch_progress(mparams, options.on_progress)
        recent_log().clear()
        self._model = C.llama_model_load_from_file(str(self.model_path).encode(), mparams)
        self._progress_cb = None
        if not self._model:
            if cancelled():
                raise ModelLoadError(f"Loading {self.model_path.name} was cancelled.")
            raise ModelLoadError(f"llama.cpp could not load {self.model_path}: {last_error()}")
        try:
            self._setup_context(options)
            if options.projector:
                self._load_projector(Path(options.projector), options)
        except BaseException:
            self.close()
            raise

    def _spread_over_helpers(self, mparams, options: LoadOptions):
        """The model's devices: each helper's (they must have answered just before: llama.cpp aborts when one does
        not, so this runs only in runtimes/spread_child.py), then this machine's GPUs; the planned layers as the
        split."""
        # deferred: llama.cpp's RPC library, only where a model is spread
        from runtimes.rpc_library import helper_devices, local_gpus

        remote = [dev for _, dev in helper_devices(options.helpers)]
        if len(remote) != len(options.helper_layers):
            raise ModelLoadError(f"The helpers now offer {len(remote)} devices, and the plan was made for "
                                 f"{len(options.helper_layers)}: load the model again.")
        gpus = local_gpus()
        here = (options.n_gpu_layers or 0) - sum(options.helper_layers)
        local = _shares(here, [free for _, free in gpus])
        counts = [*options.helper_layers, *local]
        if len(counts) > int(self._C.llama_max_devices()):
            raise ModelLoadError(f"llama.cpp takes at most {self._C.llama_max_devices()} devices; the helpers and "
                                 f"this machine have {len(counts)}.")
        devices = (ctypes.c_void_p * (len(counts) + 1))(*remote, *[dev for dev, _ in gpus], None)
        split = (ctypes.c_float * int(self._C.llama_max_devices()))(*[float(n) for n in counts])
        mparams.devices = ctypes.cast(devices, ctypes.c_void_p)
        mparams.tensor_split = split
        mparams.n_gpu_layers = max(options.n_gpu_layers or 0, 0)
        self.on_gpu = False  # a pass crosses the network: drafting is judged by its measured cost
        return devices, split

    def _load_projector(self, path: Path, options: LoadOptions) -> None:
        self.vision = Projector(path, self._model, n_threads=self.n_threads, use_gpu=bool(options.n_gpu_layers))

    def _watch_progress(self, mparams, on_progress) -> Callable[[], bool]:
        """Hand llama.cpp's load progress to `on_progress`; returns whether the listener cancelled."""
        stopped = [False]
        if on_progress is None:
            return lambda: False

        def report(progress, _user_data) -> bool:
            try:  # an exception here would reach ctypes, which would return False and abort the load
                stopped[0] = on_progress(float(progress)) is False
            except Exception:
                stopped[0] = False
            return not stopped[0]

        self._progress_cb = self._C.llama_progress_callback(report)  # kept alive for the whole load
        mparams.progress_callback = self._progress_cb
        return lambda: stopped[0]

    def _setup_context(self, options: LoadOptions) -> None:
        C = self._C
        self.n_ctx_train = int(C.llama_model_n_ctx_train(self._model))
        n_ctx = options.n_ctx or min(self.n_ctx_train, MAX_DEFAULT_CTX)
        if n_ctx > self.n_ctx_train and not options.allow_context_beyond_training:
            raise ModelLoadError(
                f"Context size {n_ctx} is beyond the {self.n_ctx_train} tokens this model was trained on; "
                "choose a smaller one, or allow it explicitly (--allow-long-context)."
            )
        recurrent = C.llama_model_is_recurrent(self._model) or C.llama_model_is_hybrid(self._model)
        cparams, threads = self._context_params(options, n_ctx, recurrent)
        cache_sizes().clear()
        self._ctx = C.llama_init_from_model(self._model, cparams)
        self.cache_bytes = int(sum(cache_sizes()) * (1 << 20))  # what llama.cpp allocated for the caches
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp could not create a context of {n_ctx} tokens: {last_error()}")
        self.n_ctx = int(C.llama_n_ctx(self._ctx))
        self.n_batch = int(cparams.n_batch)
        self.n_threads = threads  # the most it computes with
        # Without a count from the user, fewer while other programs take cores (threads.py says why)
        self._threads = ThreadChooser(threads) if options.n_threads is None else None
        self._threads_set = {}  # context address -> the count llama.cpp has now
        self.slots = options.slots
        self._past = [0] * options.slots
        # Tokens of each sequence in its last decode: a recurrent state rolls back only within one decode, by fewer
        # tokens than it read (its snapshots are that decode's; llama.cpp accepts more and leaves a wrong state).
        self._last_read = [0] * options.slots
        self._shared: dict[tuple[int, int], int] = {}  # slots sharing their first cells (llamacpp_slots.py)
        self._mem = C.llama_get_memory(self._ctx)
        self._vocab = C.llama_model_get_vocab(self._model)
        self.n_vocab = int(C.llama_vocab_n_tokens(self._vocab))
        self.sliding_window = int(C.llama_model_n_swa(self._model))  # 0: no sliding-window layers
        # Recurrent layers (Mamba, Gated DeltaNet, LFM2's convolutions) keep one state: it cannot be cut back
        # anywhere, only by the last few tokens where llama.cpp keeps snapshots (enough for a rejected draft).
        self.can_truncate = not recurrent
        self.rollback_tokens = int(C.llama_n_rs_seq(self._ctx)) if recurrent else 0
        self._batch = C.llama_batch_init(self.n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self.special = self._read_special_tokens()
        template = C.llama_model_chat_template(self._model, None)
        self.chat_template = template.decode("utf-8", errors="replace") if template else None

    def _context_params(self, options: LoadOptions, n_ctx: int, recurrent: bool):
        """llama.cpp's context parameters for `options`, and the thread count they use."""
        C = self._C
        cparams = C.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = min(options.n_batch, n_ctx)
        cparams.n_seq_max = options.slots
        cparams.kv_unified = options.slots > 1  # the slots share every cell, not a fixed slice of n_ctx each
        threads = options.n_threads or default_threads()
        cparams.n_threads = cparams.n_threads_batch = threads
        flash = options.flash_attn
        type_id, _ = KV_CACHE_TYPES[options.kv_cache_type]
        cparams.type_k = cparams.type_v = type_id
        if options.kv_cache_type != "f16":
            flash = True  # a quantized V cache needs it (LoadOptions.validate refused an explicit off)
        if flash is None and (not options.n_gpu_layers or (options.helpers and not llama_gpu_offload())):
            # On the CPU, llama.cpp's flash attention makes each token cost ~3x more at a 3k-token depth
            # (measured: 79 vs 29 ms a token here), which is exactly where KV reuse should shine. Helpers count as
            # GPUs to llama.cpp: a machine without a GPU of its own keeps it off for them too (the same kernels as
            # the model alone on its CPU).
            flash = False
        if flash is not None:
            cparams.flash_attn_type = int(flash)
        cparams.no_perf = True
        # The small sliding-window cache (window + a batch), not one as long as the context: every cut back is
        # checked against the positions it still holds (truncate), and checkpoints cover the rest.
        cparams.swa_full = False
        # Recurrent layers keep snapshots of their last states, so a rejected draft rolls back (LFM2, Qwen3.5,
        # Nemotron-H: llama.cpp turns this off for architectures that cannot).
        # With slots, each sequence keeps a state (and its snapshots) of its own: llama.cpp gives the recurrent
        # memory one cell per sequence.
        cparams.n_rs_seq = RECURRENT_SNAPSHOTS if recurrent else 0
        return cparams, threads

    def _read_special_tokens(self) -> SpecialTokens:
        C, v = self._C, self._vocab
        bos, eos, eot = (int(f(v)) for f in (C.llama_vocab_bos, C.llama_vocab_eos, C.llama_vocab_eot))
        valid = lambda t: 0 <= t < self.n_vocab  # noqa: E731
        ends = frozenset(t for t in range(self.n_vocab) if C.llama_vocab_is_eog(v, t))
        unparsed = C.LLAMA_TOKEN_ATTR_CONTROL | C.LLAMA_TOKEN_ATTR_UNKNOWN  # never made from text without parse_special
        control = frozenset(t for t in range(self.n_vocab) if C.llama_vocab_get_attr(v, t) & unparsed)
        return SpecialTokens(
            bos=bos if valid(bos) else None,
            eos=eos if valid(eos) else None,
            end_of_turn=ends | frozenset(t for t in (eos, eot) if valid(t)),
            add_bos=bool(C.llama_vocab_get_add_bos(v)),
            bos_text=self.token_bytes(bos).decode("utf-8", "replace") if valid(bos) else "",
            eos_text=self.token_bytes(eos).decode("utf-8", "replace") if valid(eos) else "",
            control=control,
        )

    # -- tokens -------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return self._past[0]

    @property
    def _n_past(self) -> int:  # the Runtime interface's one sequence is seq 0
        return self._past[0]

    @_n_past.setter
    def _n_past(self, value: int) -> None:
        self._past[0] = value

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        if len(data) >= 1 << 30:
            raise InvalidRequestError("Text too long to tokenize.")
        cap = len(data) + 8
        while True:
            buf = (self._C.llama_token * cap)()
            n = self._C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, parse_special)
            if n >= 0:
                return list(buf[:n])
            cap = -n

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            if token < 0 and self.vision is not None:  # an image's position: its marker (runtimes/vision.py)
                return self.vision.piece(token)
            check_token_ids([token], self.n_vocab)
            buf = ctypes.create_string_buffer(64)
            n = self._C.llama_token_to_piece(self._vocab, token, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._C.llama_token_to_piece(self._vocab, token, buf, -n, 0, True)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    # -- the KV cache ---------------------------------------------------------------------------

    def forward(self, tokens: Sequence[int], start: int, *, rows: Sequence[int] | None = None) -> np.ndarray:
        n = len(tokens)
        if self.vision is not None and any(t < 0 for t in tokens if isinstance(t, (int, np.integer))):
            runs = self.vision.runs(list(tokens))  # images come whole; their ids are checked there
            rows = check_forward(self, [0] * n, start, rows)
            for lo, hi, image in runs:
                if image is None:
                    check_token_ids(tokens[lo:hi], self.n_vocab)
                elif any(lo <= r < hi for r in rows):
                    raise InvalidRequestError("forward() gives no logits at an image's positions.")
        else:
            rows = check_forward(self, tokens, start, rows)
            runs = [(0, n, None)]
        self._check_room(n)
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        wanted = {r: i for i, r in enumerate(rows)}
        try:
            for run_lo, run_hi, image in runs:
                if image is not None:
                    self._n_past = self.vision.evaluate(image, self._ctx, start + run_lo, 0, self.n_batch)
                    self._last_read[0] = 0  # an image's decodes are not a draft: nothing of them rolls back
                    continue
                for lo in range(run_lo, run_hi, self.n_batch):  # chunks never exceed n_batch (a GGML_ASSERT)
                    hi = min(lo + self.n_batch, run_hi)
                    self._decode(tokens, lo, hi, start, wanted)
                    if self.mtp is not None:  # its heads read the hidden states of this batch, now or never
                        self.mtp.follow(tokens[lo:hi], start + lo)
                    self._last_read[0] = hi - lo
                    for r in range(lo, hi):
                        if r in wanted:
                            ptr = self._C.llama_get_logits_ith(self._ctx, r - lo)
                            ctypes.memmove(out[wanted[r]].ctypes.data, ptr, self.n_vocab * 4)
                    self._n_past = start + hi
        except BaseException:
            # Keep the cache and our count in step whatever happened.
            self._C.llama_memory_seq_rm(self._mem, 0, self._n_past, -1)
            raise
        return out

    @property
    def threads_in_use(self) -> int:
        return self._threads.threads if self._threads is not None else self.n_threads

    def _follow_load(self, ctx) -> None:
        """Before a decode: the thread count the machine's load allows now."""
        if self._threads is None:
            return
        n = self._threads.choose()
        if self._threads_set.get(ctx) != n:
            self._C.llama_set_n_threads(ctx, n, n)
            self._threads_set[ctx] = n

    def _decode(self, tokens: Sequence[int], lo: int, hi: int, start: int, wanted: dict[int, int]) -> None:
        b = self._batch
        for j, r in enumerate(range(lo, hi)):
            b.token[j] = int(tokens[r])
            b.pos[j] = start + r
            b.n_seq_id[j] = 1
            b.seq_id[j][0] = 0
            b.logits[j] = r in wanted
        b.n_tokens = hi - lo
        self._follow_load(self._ctx)
        rc = self._C.llama_decode(self._ctx, b)
        if rc != 0:
            raise RuntimeFailure(f"llama.cpp failed to process the tokens (code {rc}): {last_error()}")

    def evaluate_image(self, seq: int, image) -> None:
        """Put a prepared image's positions at the end of sequence `seq` (a slot's image: engine/slots.py)."""
        self._check_seq(seq)
        self._check_room(image.n_pos)
        before = self._past[seq]
        try:
            self._past[seq] = self.vision.evaluate(image, self._ctx, before, seq, self.n_batch)
            self._last_read[seq] = 0  # an image's decodes are not a draft: nothing of them rolls back
        except BaseException:
            self._C.llama_memory_seq_rm(self._mem, seq, before, -1)
            self._past[seq] = before
            raise

    def truncate(self, n_keep: int) -> bool:
        """Drop the cache from `n_keep` on; False (and nothing dropped) where that cannot be done exactly."""
        return self.truncate_seq(0, n_keep)

    def reset(self) -> None:
        self._C.llama_memory_clear(self._mem, True)
        self._past = [0] * len(self._past)
        self._last_read = [0] * len(self._past)
        self._shared = {}

    def save_state(self) -> bytearray:
        return self.save_seq(0)

    def restore_state(self, data: bytes, n_tokens: int) -> None:
        self.restore_seq(0, data, n_tokens)

    # -- embeddings from this (chat) model: its last hidden states, mean-pooled ------------------------

    def embed(self, inputs: Sequence[Sequence[int]]) -> np.ndarray:
        """One L2-normalized vector per token list, from this model's own hidden states (mean over the tokens), in a
        context of its own: the chat's cache is left as it is."""
        C = self._C
        if not self.can_truncate:
            raise InvalidRequestError("Pooled embeddings from a model with recurrent layers are not supported: "
                                      "use an embedding model.", param="model")
        if self._embed_ctx is None:
            cparams = C.llama_context_default_params()
            cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = min(self.n_ctx, EMBED_CTX)
            cparams.n_seq_max = 1
            cparams.embeddings = True
            cparams.pooling_type = C.LLAMA_POOLING_TYPE_MEAN
            cparams.n_threads = cparams.n_threads_batch = self.n_threads
            cparams.no_perf = True
            ctx = C.llama_init_from_model(self._model, cparams)
            if not ctx:
                raise RuntimeFailure(f"llama.cpp could not make a context for embeddings: {last_error()}")
            self._embed_ctx, self._embed_batch = ctx, C.llama_batch_init(int(cparams.n_batch), 0, 1)
        n_ctx, n_embd = int(C.llama_n_ctx(self._embed_ctx)), int(C.llama_model_n_embd(self._model))
        for i, tokens in enumerate(inputs):
            if not tokens:
                raise InvalidRequestError(f"input[{i}] is empty.", param="input")
            if len(tokens) > n_ctx:
                raise InvalidRequestError(f"input[{i}] is {len(tokens)} tokens; embeddings from this model read at "
                                          f"most {n_ctx} at once. Split it into shorter pieces.", param="input")
            check_token_ids(tokens, self.n_vocab)
        out = np.empty((len(inputs), n_embd), dtype=np.float32)
        b = self._embed_batch
        for i, tokens in enumerate(inputs):
            C.llama_memory_clear(C.llama_get_memory(self._embed_ctx), True)
            for j, t in enumerate(tokens):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = int(t), j, 1, True
                b.seq_id[j][0] = 0
            b.n_tokens = len(tokens)
            self._follow_load(self._embed_ctx)
            rc = C.llama_decode(self._embed_ctx, b)
            if rc != 0:
                raise RuntimeFailure(f"llama.cpp failed to embed input[{i}] (code {rc}): {last_error()}")
            ptr = C.llama_get_embeddings_seq(self._embed_ctx, 0)
            ctypes.memmove(out[i].ctypes.data, ptr, n_embd * 4)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    def start_mtp(self) -> MtpHeads:
        """Draft with this model's MTP heads from now on: its own (loaded with LoadOptions.load_mtp), or a Gemma 4
        assistant's (LoadOptions.mtp_assistant); MtpUnavailable where the model or this llama.cpp cannot."""
        if self.mtp is None:
            assistant = self.options.mtp_assistant
            if not assistant and not self.options.load_mtp:
                raise MtpUnavailable(f"{self.model_path.name} was loaded without its MTP heads (load_mtp).")
            model, owned = (self._load_assistant(Path(assistant)), True) if assistant else (self._model, False)
            try:
                self.mtp = MtpHeads(self._C, model, self._ctx, n_ctx=self.n_ctx, n_batch=self.n_batch,
                                    n_threads=self.n_threads, shared=bool(assistant), owns_model=owned)
            except BaseException:
                if owned:
                    self._C.llama_model_free(model)
                raise
        return self.mtp

    def _load_assistant(self, path: Path):
        """A Gemma 4 assistant's weights, where the model's are (its GGUF checked first, as the model's was)."""
        check_gguf_file(path, check_header=True)
        mparams = self._C.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if self.on_gpu else 0
        mparams.use_extra_bufts = not cpu_has_amx()
        recent_log().clear()
        model = self._C.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise MtpUnavailable(f"llama.cpp could not load the assistant {path.name}: {last_error()}")
        return model

    def close(self) -> None:
        C = self._C
        if getattr(self, "mtp", None) is not None:
            self.mtp.close()  # its context before the model's
            self.mtp = None
        if getattr(self, "vision", None) is not None:
            self.vision.close()
            self.vision = None
        # each freed once, in this order (the contexts before the model they use)
        for attr, free in (("_embed_batch", C.llama_batch_free), ("_embed_ctx", C.llama_free),
                           ("_batch", C.llama_batch_free), ("_ctx", C.llama_free), ("_model", C.llama_model_free)):
            handle = getattr(self, attr, None)
            if handle is not None and (attr.endswith("batch") or handle):
                free(handle)
                setattr(self, attr, None)

    def __del__(self):  # a safety net; the engine closes explicitly
        try:
            self.close()
        except Exception:
            pass


def _shares(n: int, weights: list[int]) -> list[int]:
    """`n` layers over this machine's GPUs by their free memory, in whole layers."""
    if not weights:
        return []
    total = sum(weights) or len(weights)
    counts = [int(n * (w or 1) / total) for w in weights]
    counts[0] += n - sum(counts)
    return counts
