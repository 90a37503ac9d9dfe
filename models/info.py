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

    def kv_bytes(self, n_ctx: int) -> int:
        return self.kv_bytes_per_token * n_ctx


def describe_model(path: str | os.PathLike) -> ModelInfo:
    p = Path(path)
    if p.is_dir():
        return _describe_mlx(p)
    from backends.llamacpp import check_gguf_file

    check_gguf_file(p)
    return _describe_gguf(p)


def _describe_gguf(path: Path) -> ModelInfo:
    from collections import Counter

    from gguf import GGUFReader

    try:
        r = GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as e:
        raise ModelLoadError(f"{path.name} is not a readable GGUF file: {e}") from None
    field = lambda k, d=None: r.fields[k].contents() if k in r.fields else d  # noqa: E731
    arch = field("general.architecture", "")
    n_layers = int(field(f"{arch}.block_count", 0))
    n_heads = int(field(f"{arch}.attention.head_count", 1) or 1)
    n_kv = field(f"{arch}.attention.head_count_kv", n_heads)
    n_kv = int(max(n_kv) if isinstance(n_kv, list) else n_kv)  # per-layer lists in some models
    hidden = int(field(f"{arch}.embedding_length", 0))
    k_len = int(field(f"{arch}.attention.key_length", hidden // n_heads if n_heads else 0))
    v_len = int(field(f"{arch}.attention.value_length", k_len))
    types = Counter()
    for t in r.tensors:
        types[t.tensor_type.name] += int(t.n_bytes)
    quant = types.most_common(1)[0][0] if types else ""
    if field("general.file_type") is not None:
        from gguf import LlamaFileType

        try:
            quant = LlamaFileType(int(field("general.file_type"))).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    outside = sum(int(t.n_bytes) for t in r.tensors if not t.name.startswith("blk."))
    return ModelInfo(
        path=path, format="gguf", size_bytes=path.stat().st_size, n_layers=n_layers,
        n_ctx_train=int(field(f"{arch}.context_length", 0)), kv_bytes_per_token=n_layers * n_kv * (k_len + v_len) * 2,
        architecture=arch, quant=quant, output_bytes=outside,
    )


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
        quant=f"{q['bits']}-bit" if "bits" in q else "unquantized",
    )
