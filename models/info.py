"""What a model file is, read from its own metadata: format, size, layers and KV cache size."""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from basics.errors import LanternError, ModelLoadError
from chat_format.chat_template import ChatTemplate
from chat_format.format_choice import detect
from chat_format.reply import think_tags
from files.gguf_check import check_header
from files.gguf_header import read_gguf_header
from runtimes.llama_library import RECURRENT_SNAPSHOTS, ROLLBACK_ARCHITECTURES, check_gguf_file
from runtimes.llama_mtp import mtp_layers
from runtimes.runtime import KV_CACHE_TYPES


@dataclass(frozen=True)
class ModelInfo:
    """A description of a model, enough to decide where it runs and whether it fits."""

    path: Path
    format: str  # "gguf" or "mlx"
    size_bytes: int  # weights on disk (and so in memory)
    n_layers: int
    n_ctx_train: int
    kv_bytes_per_token: int  # K and V of the layers whose cache grows with the context (full attention), f16
    architecture: str = ""
    quant: str = ""  # the most common tensor type (Q4_1, Q4_K...) or "4-bit" for MLX
    output_bytes: int = 0  # embeddings and output layer: stay beside the layers a GPU holds
    chat_template: bool = False
    tool_format: str = ""  # how the model writes tool calls: hermes, llama3, mistral, qwen3-coder, harmony, generic
    reasoning: str = ""  # its reasoning block's tags (<think>...</think>), or "" when its template has none
    pooling: int = 0  # llama.cpp's pooling type: 0 none (a model that writes text), 1 mean, 2 CLS, 3 last, 4 rank
    mtp_layers: int = 0  # its multi-token-prediction blocks (nextn_predict_layers), which can draft for it

    window: int = 0  # sliding-window layers keep this many positions (0: the model has none)
    window_bytes_per_token: int = 0  # K and V of the sliding-window layers
    state_bytes: int = 0  # recurrent layers (Mamba, Gated DeltaNet, convolutions) keep a fixed state

    def kv_bytes(self, n_ctx: int, *, n_ubatch: int = 512, slots: int = 1, kv_type: str = "f16") -> int:
        """The cache at `n_ctx`: full-attention layers grow with it, sliding-window layers stop at their window (and
        one batch: llama.cpp's small SWA cache), recurrent layers keep their fixed state. With several slots the
        context's cells are shared, but each slot keeps a window and a state of its own. `kv_type` (KV_CACHE_TYPES)
        scales the attention layers' K and V; recurrent states stay f32."""
        scale = KV_CACHE_TYPES[kv_type][1] / KV_CACHE_TYPES["f16"][1]
        window_cells = min(n_ctx, _pad(self.window * slots + n_ubatch)) if self.window else 0
        attention = self.kv_bytes_per_token * n_ctx + self.window_bytes_per_token * window_cells
        return int(attention * scale) + self.state_bytes * slots


def _pad(n: int, to: int = 256) -> int:
    return (n + to - 1) // to * to


# Which layers slide, for architectures whose files do not say (as llama.cpp sets them): every Nth layer is global.
SWA_EVERY = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "llama4": 4, "exaone4": 4}
RECURRENT_ONLY = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"}


def describe_model(path: str | os.PathLike) -> ModelInfo:
    p = Path(path)
    if p.is_dir():
        return _describe_mlx(p)

    check_gguf_file(p, check_header=False)  # the header is read and checked once, below
    return _describe_gguf(p)


def _describe_gguf(path: Path) -> ModelInfo:
    return info_from_header(read_gguf_header(path), path=path, size_bytes=path.stat().st_size)


def info_from_header(header, *, path: Path, size_bytes: int) -> ModelInfo:
    """A ModelInfo from a GGUF header (read from a local file, or from the first bytes of a remote one)."""
    check_header(header, file_size=size_bytes, name=path.name)  # also a remote header: nothing unchecked is used
    meta = header.metadata
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        v = meta.get(f"{arch}.{key}", default)
        return int(max(v) if isinstance(v, list) and v else v)  # per-layer lists in some models

    n_layers = number("block_count")
    n_heads = number("attention.head_count", 1) or 1
    k_len = number("attention.key_length", number("embedding_length") // n_heads)
    v_len = number("attention.value_length", k_len)
    memory = _memory_by_layer_kind(meta, arch, n_layers, n_heads, k_len + v_len, number)
    by_type = Counter()
    for t in header.tensors:
        by_type[t.type_name] += t.n_bytes
    quant = by_type.most_common(1)[0][0] if by_type else ""
    if isinstance(meta.get("general.file_type"), int):
        # deferred: gguf (~90 ms to import), only for its tables
        from gguf import LlamaFileType

        try:
            quant = LlamaFileType(meta["general.file_type"]).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    return ModelInfo(
        path=path, format="gguf", size_bytes=size_bytes, n_layers=n_layers,
        n_ctx_train=number("context_length"), **memory,
        architecture=arch, quant=quant,
        output_bytes=sum(t.n_bytes for t in header.tensors if not t.name.startswith("blk.")),
        chat_template=bool(meta.get("tokenizer.chat_template")),
        **chat_style(meta.get("tokenizer.chat_template")),
        pooling=number("pooling_type", 0),
        mtp_layers=min(mtp_layers(meta), n_layers),
    )


def _memory_by_layer_kind(meta: dict, arch: str, n_layers: int, n_heads: int, kv_len: int, number) -> dict:
    """Cache bytes by layer kind, from the file's metadata (as llama.cpp reads it to allocate)."""
    def per_layer(key: str, default):
        v = meta.get(f"{arch}.{key}", default)
        return [int(x) for x in v] if isinstance(v, list) and len(v) == n_layers else [int(v)] * n_layers

    kv_heads = per_layer("attention.head_count_kv", per_layer("attention.head_count", n_heads))
    recurrent = [arch in RECURRENT_ONLY or h == 0 for h in kv_heads]
    if arch.startswith("nemotron_h"):  # its feed-forward-only layers have no KV heads either, and no state
        recurrent = [r and ff == 0 for r, ff in zip(recurrent, per_layer("feed_forward_length", 0))]
    interval = number("full_attention_interval", 0)
    if interval > 0:  # Qwen3-Next / Qwen3.5: one attention layer in `interval`, Gated DeltaNet in the others
        recurrent = [(i + 1) % interval != 0 for i in range(n_layers)]
    window = number("attention.sliding_window", 0)
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layers:
        sliding = [bool(x) for x in pattern]
    elif window and arch in SWA_EVERY:
        every = SWA_EVERY[arch]
        sliding = [(i + 1) % every != 0 for i in range(n_layers)]
    else:
        sliding = [False] * n_layers  # a window without a known pattern: counted as full (an overestimate)
    full = window_b = 0
    for i in range(n_layers):
        if recurrent[i]:
            continue
        b = kv_heads[i] * kv_len * 2  # f16
        if sliding[i]:
            window_b += b
        else:
            full += b

    copies = 1 + (RECURRENT_SNAPSHOTS if arch in ROLLBACK_ARCHITECTURES else 0)  # the rollback snapshots
    state = sum(recurrent) * _recurrent_state_bytes(number) * copies
    return {"kv_bytes_per_token": full, "window": window if window_b else 0, "window_bytes_per_token": window_b,
            "state_bytes": state}


def _recurrent_state_bytes(number) -> int:
    """One recurrent layer's state, f32: the convolution's last kernel-1 inputs and the SSM state."""
    d_conv, d_inner = number("ssm.conv_kernel", 0), number("ssm.inner_size", 0)
    d_state, n_group = number("ssm.state_size", 0), max(1, number("ssm.group_count", 1))
    if d_conv and d_inner:
        conv = (d_conv - 1) * (d_inner + 2 * n_group * d_state)
        return 4 * (conv + d_state * d_inner)
    l_cache = number("shortconv.l_cache", 0)  # LFM2's short convolutions
    return 4 * max(0, l_cache - 1) * number("embedding_length", 0) if l_cache else 0


def chat_style(template: object) -> dict:
    """The tool-call format and reasoning tags a chat template shows (compiled in the sandbox, never trusted)."""
    source = template if isinstance(template, str) else None
    try:
        t = ChatTemplate(source)
    except LanternError:
        return {"tool_format": "none (the template does not compile)"}
    tags = think_tags(t.source)
    return {"tool_format": detect(t.source, template_takes_tools=t.caps.tools).name,
            "reasoning": "".join(tags) if tags else ""}


def _describe_mlx(path: Path) -> ModelInfo:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path} is not an MLX model folder (config.json: {e}).") from None
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return info_from_config(config, path=path, size_bytes=size, chat_template=_mlx_template(path))


def info_from_config(config: object, *, path, size_bytes: int, chat_template: bool = False) -> ModelInfo:
    """A ModelInfo from an MLX folder's config.json (local, or fetched from the Hub); ValueError if malformed."""
    try:
        c = {**config.get("text_config", {}), **config}
        n_layers = int(c.get("num_hidden_layers", 0))
        n_heads = int(c.get("num_attention_heads", 1) or 1)
        head_dim = int(c.get("head_dim") or int(c.get("hidden_size", 0)) // n_heads)
        n_kv = int(c.get("num_key_value_heads") or n_heads)
        q = c.get("quantization") or {}
        n_ctx = int(c.get("max_position_embeddings") or 0)
        window = int(c.get("sliding_window") or 0)
        kinds = c.get("layer_types")
        quant = f"{int(q['bits'])}-bit" if isinstance(q, dict) and "bits" in q else "unquantized"
    except (ValueError, TypeError, AttributeError, ZeroDivisionError, OverflowError, RecursionError, KeyError) as e:
        raise ValueError(f"config.json is malformed ({type(e).__name__})") from None
    per_layer = n_kv * head_dim * 2 * 2
    memory = {"kv_bytes_per_token": n_layers * per_layer}
    if isinstance(kinds, list) and len(kinds) == n_layers:  # Gemma 3, Qwen3.5...: which layers slide or recur
        sliding = sum(k == "sliding_attention" for k in kinds)
        memory = {"kv_bytes_per_token": sum(k in ("full_attention", "attention") for k in kinds) * per_layer,
                  "window": window if sliding else 0, "window_bytes_per_token": sliding * per_layer if window else 0}
    return ModelInfo(path=path, format="mlx", size_bytes=size_bytes, n_layers=n_layers, n_ctx_train=n_ctx, **memory,
                     architecture=str(c.get("model_type", ""))[:80], quant=quant, chat_template=chat_template)


def _mlx_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file():
        return True
    try:
        return bool(json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False
