"""GGUF -> MLX: one quantized model that runs on both backends.

`mlx.core.load` reads Q4_0, Q4_1, Q8_0, F16 and F32 GGUF tensors straight into MLX's affine
quantized layout (4 or 8 bits, groups of 32, scales and biases): nothing is re-quantized or lost.
This module maps the tensor names to mlx-lm's, writes config.json from the GGUF metadata and
builds the tokenizer from the GGUF vocabulary and merges with the `tokenizers` library.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from basics.errors import LanternError, ModelLoadError
from files.gguf_header import read_gguf_header
from files.owned_files import cache_dir
from runtimes.llama_library import check_gguf_file
from runtimes.mlx_runtime import END_OF_TURN_TEXTS

# GGUF tensor types MLX reads, and the bits they become (None: stays a plain float tensor).
MLX_READABLE = {"F32": None, "F16": None, "Q4_0": 4, "Q4_1": 4, "Q8_0": 8}
GROUP_SIZE = 32  # every GGUF block type MLX reads has blocks of 32

SUPPORTED_ARCHITECTURES = ("llama",)
CONVERTER_VERSION = 1  # bump when the output changes, so cached conversions are made again

# llama.cpp's pre-tokenizer types that are the GPT-2 regex, with each digit split off first.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_GPT2_PRE = {"gpt-2", "default"}


_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


class ConversionError(LanternError):
    """The GGUF file cannot be turned into an MLX model (and why)."""


def mlx_name(gguf_name: str) -> str:
    """`blk.3.attn_q.scales` -> `model.layers.3.self_attn.q_proj.scales`."""
    stem, _, leaf = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        if part in _LAYER_NAMES:
            return f"model.layers.{int(layer)}.{_LAYER_NAMES[part]}.{leaf}"
    elif stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{leaf}"
    raise ConversionError(f"The converter does not know the tensor {gguf_name!r}.")


def convert_gguf_to_mlx(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an MLX model folder (config.json, model.safetensors, tokenizer) for a GGUF file.

    The folder appears complete or not at all: it is written beside `out_dir` and renamed.
    """
    src, out = Path(gguf_path), Path(out_dir)

    if out.exists() and not overwrite:
        raise ConversionError(f"{out} already exists; choose another folder or allow overwriting (--force).")
    check_gguf_file(src)

    header = read_gguf_header(src)  # fast: refuse what cannot convert before reading the vocabulary
    types = {t.name: t.type_name for t in header.tensors}
    _check_tensor_types(src, types)
    arch = header.metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(f"{src.name}: the {arch!r} architecture cannot be converted to MLX yet "
                              f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)}).")
    reader = _read_gguf(src)
    meta = {k: f.contents() for k, f in reader.fields.items()}
    if "rope_freqs.weight" in types or f"{arch}.rope.scaling.type" in meta:
        raise ConversionError(f"{src.name} uses rotary-embedding scaling, which the converter does not support yet.")
    config = _config(meta, arch, types)
    tokenizer, tokenizer_config = _tokenizer(meta)

    # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
    import mlx.core as mx

    weights = {mlx_name(k): v for k, v in mx.load(str(src)).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, {"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConversionError(f"Could not write the MLX model to {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def mlx_copy_of(gguf_path: Path) -> Path:
    """The MLX folder converted from a GGUF file, made once and kept in Lantern's cache."""
    st = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CONVERTER_VERSION}".encode())
    out = cache_dir() / "mlx" / f"{gguf_path.stem}-{key.hexdigest()[:12]}"
    if not (out / "config.json").is_file():
        convert_gguf_to_mlx(gguf_path, out, overwrite=True)
    return out


def _read_gguf(path: Path):
    # deferred: gguf (~90 ms to import), only for its tables
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as e:
        raise ModelLoadError(f"{path.name} is not a readable GGUF file: {e}") from None


def _check_tensor_types(src: Path, types: dict[str, str]) -> None:
    unreadable = sorted({t for t in types.values() if t not in MLX_READABLE})
    if unreadable:
        raise ConversionError(
            f"{src.name} holds {', '.join(unreadable)} tensors, which MLX cannot read; MLX reads "
            f"{', '.join(MLX_READABLE)}. Pick a Q4_0, Q4_1 or Q8_0 file of this model, or an MLX 4-bit repository."
        )


def _config(meta: dict, arch: str, types: dict[str, str]) -> dict:
    def get(key: str, default=None):
        return meta.get(f"{arch}.{key}", default)

    n_heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    tokens = meta["tokenizer.ggml.tokens"]
    eos = [int(meta[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta]
    eos += [i for i, t in enumerate(tokens) if t in END_OF_TURN_TEXTS and i not in eos]
    config = {
        "model_type": arch,
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", n_heads)),
        "head_dim": int(get("attention.key_length", get("rope.dimension_count", hidden // n_heads))),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        # llama.cpp's converter permutes Q and K rows for its interleaved rotary embedding:
        # "traditional" rope in MLX is that same layout.
        "rope_traditional": True,
        "vocab_size": int(get("vocab_size", len(tokens))),
        "max_position_embeddings": int(get("context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in types,
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]) if "tokenizer.ggml.bos_token_id" in meta else None,
        "eos_token_id": eos,
        "quantization": _quantization(types),
    }
    return config


def _quantization(types: dict[str, str]) -> dict:
    """mlx-lm's per-layer quantization: the most common bit width, and each exception by layer path."""
    bits = {mlx_name(k).removesuffix(".weight"): MLX_READABLE[t] for k, t in types.items() if k.endswith(".weight")}
    quantized = [b for b in bits.values() if b]
    default = max(set(quantized), key=quantized.count) if quantized else 4
    q: dict = {"group_size": GROUP_SIZE, "bits": default}
    for layer, b in bits.items():
        if b != default:  # a float layer (norms, or an F16 embedding) must stay unquantized
            q[layer] = {"group_size": GROUP_SIZE, "bits": b} if b else False
    return q


def _tokenizer(meta: dict):
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConversionError(f"Only byte-level BPE tokenizers can be converted yet; this model's is {kind!r}.")
    pre = meta.get("tokenizer.ggml.pre", "default")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    kinds = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False,
                               byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_SPLIT_PRE:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in _GPT2_PRE:
        tok.pre_tokenizer = byte_level
    elif pre == "llama-bpe":
        pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        raise ConversionError(f"The tokenizer pre-processing {pre!r} cannot be converted yet.")
    tok.decoder = decoders.ByteLevel()
    # CONTROL (3) tokens are special; USER_DEFINED (4) ones are matched whole but are plain text.
    tok.add_tokens([AddedToken(t, special=k == 3, normalized=False) for t, k in zip(tokens, kinds) if k in (3, 4)])

    def text_of(key: str) -> str | None:
        i = meta.get(key)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": text_of("tokenizer.ggml.bos_token_id"),
        "eos_token": text_of("tokenizer.ggml.eos_token_id"),
        "unk_token": text_of("tokenizer.ggml.unknown_token_id"),
        "pad_token": text_of("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 30,
    }
    if meta.get("tokenizer.chat_template"):
        config["chat_template"] = meta["tokenizer.chat_template"]
    return tok, {k: v for k, v in config.items() if v is not None}
