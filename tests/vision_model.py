"""A tiny vision projector (a llava-style CLIP mmproj) with random weights, written with the `gguf` package.

No small vision GGUF can be had from PyPI, so the tests pair a random projector with the starter model: it
exercises detection, loading, image tokens in the KV cache, reuse and bad input exactly, not what the model sees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_projector(path: Path, *, n_embd_text: int, image_size: int = 16, patch_size: int = 8, n_embd: int = 32,
                    n_ff: int = 48, n_layer: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """A projector whose images become (image_size / patch_size)² embeddings of `n_embd_text` numbers."""
    import gguf

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    n_patches = (image_size // patch_size) ** 2
    w = gguf.GGUFWriter(str(path), arch="clip")
    w.add_string("general.name", "tiny random projector")
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.projection_dim", n_embd_text)
    w.add_uint32("clip.vision.attention.head_count", 2)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_tensor("v.patch_embd.weight", weights(n_embd, 3, patch_size, patch_size))
    w.add_tensor("v.position_embd.weight", weights(n_patches, n_embd))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"v.blk.{i}.{name}.weight", weights(n_embd, n_embd))
            w.add_tensor(f"v.blk.{i}.{name}.bias", weights(n_embd))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"v.blk.{i}.{name}.weight", np.ones(n_embd, dtype=np.float32))
            w.add_tensor(f"v.blk.{i}.{name}.bias", np.zeros(n_embd, dtype=np.float32))
        w.add_tensor(f"v.blk.{i}.ffn_up.weight", weights(n_ff, n_embd))
        w.add_tensor(f"v.blk.{i}.ffn_up.bias", weights(n_ff))
        w.add_tensor(f"v.blk.{i}.ffn_down.weight", weights(n_embd, n_ff))
        w.add_tensor(f"v.blk.{i}.ffn_down.bias", weights(n_embd))
    w.add_tensor("mm.0.weight", weights(hidden, n_embd))
    w.add_tensor("mm.0.bias", weights(hidden))
    w.add_tensor("mm.2.weight", weights(n_embd_text, hidden))
    w.add_tensor("mm.2.bias", weights(n_embd_text))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def png_bytes(width: int = 24, height: int = 20, seed: int = 0) -> bytes:
    """A small PNG of random colours."""
    from runtimes.vision import png_bytes as write_png

    return write_png(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
