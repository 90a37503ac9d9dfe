"""What a model file is, read from its own metadata: format, size, layers and KV cache size."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from backends.runtime import ModelLoadError


@dataclass(frozen=True)
class ModelInfo:
    """A description of a model, enough to decide where it runs and whether it fits."""

    path: Path
    format: str  # "gguf" or "mlx"
    size_bytes: int  # weights on disk (and so in memory)
    n_layers: int
    n_ctx_train: int
    kv_bytes_per_token: int  # K and V over every layer, f16
    architecture: str = ""
    quant: str = ""  # the most common tensor type (Q4_1, Q4_K...) or "4-bit" for MLX
    output_bytes: int = 0  # embeddings and output layer: stay beside the layers a GPU holds
    chat_template: bool = False
    tool_format: str = ""  # how the model writes tool calls: hermes, llama3, mistral, qwen3-coder, harmony, generic
    reasoning: str = ""  # its reasoning block's tags (<think>...</think>), or "" when its template has none

    def kv_bytes(self, n_ctx: int) -> int:
        return self.kv_bytes_per_token * n_ctx


def describe_model(path: str | os.PathLike) -> ModelInfo:
    p = Path(path)
    if p.is_dir():
        return _describe_mlx(p)
    from backends.llamacpp import check_gguf_file

    check_gguf_file(p, check_header=False)  # the header is read and checked once, below
    return _describe_gguf(p)


def _describe_gguf(path: Path) -> ModelInfo:
    from models.gguf_header import read_gguf_header

    return info_from_header(read_gguf_header(path), path=path, size_bytes=path.stat().st_size)


def info_from_header(header, *, path: Path, size_bytes: int) -> ModelInfo:
    """A ModelInfo from a GGUF header (read from a local file, or from the first bytes of a remote one)."""
    from collections import Counter

    from models.gguf_check import check_header

    check_header(header, file_size=size_bytes, name=path.name)  # also a remote header: nothing unchecked is used
    meta = header.metadata
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        v = meta.get(f"{arch}.{key}", default)
        return int(max(v) if isinstance(v, list) and v else v)  # per-layer lists in some models

    n_layers = number("block_count")
    n_heads = number("attention.head_count", 1) or 1
    n_kv = number("attention.head_count_kv", n_heads)
    k_len = number("attention.key_length", number("embedding_length") // n_heads)
    v_len = number("attention.value_length", k_len)
    by_type = Counter()
    for t in header.tensors:
        by_type[t.type_name] += t.n_bytes
    quant = by_type.most_common(1)[0][0] if by_type else ""
    if isinstance(meta.get("general.file_type"), int):
        from gguf import LlamaFileType

        try:
            quant = LlamaFileType(meta["general.file_type"]).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    return ModelInfo(
        path=path, format="gguf", size_bytes=size_bytes, n_layers=n_layers,
        n_ctx_train=number("context_length"), kv_bytes_per_token=n_layers * n_kv * (k_len + v_len) * 2,
        architecture=arch, quant=quant,
        output_bytes=sum(t.n_bytes for t in header.tensors if not t.name.startswith("blk.")),
        chat_template=bool(meta.get("tokenizer.chat_template")),
        **chat_style(meta.get("tokenizer.chat_template")),
    )


def chat_style(template: object) -> dict:
    """The tool-call format and reasoning tags a chat template shows (compiled in the sandbox, never trusted)."""
    from backends.chat_template import ChatTemplate
    from backends.reply import think_tags
    from backends.runtime import LanternError
    from backends.tool_formats import detect

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
    c = {**config.get("text_config", {}), **config}
    n_layers = int(c.get("num_hidden_layers", 0))
    n_heads = int(c.get("num_attention_heads", 1) or 1)
    head_dim = int(c.get("head_dim") or int(c.get("hidden_size", 0)) // n_heads)
    n_kv = int(c.get("num_key_value_heads") or n_heads)
    q = c.get("quantization") or {}
    return ModelInfo(
        path=path, format="mlx", size_bytes=sum(f.stat().st_size for f in path.glob("*.safetensors")),
        n_layers=n_layers, n_ctx_train=int(c.get("max_position_embeddings") or 0),
        kv_bytes_per_token=n_layers * n_kv * head_dim * 2 * 2, architecture=str(c.get("model_type", "")),
        quant=f"{q['bits']}-bit" if "bits" in q else "unquantized", chat_template=_mlx_template(path),
    )


def _mlx_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file():
        return True
    try:
        return bool(json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False
