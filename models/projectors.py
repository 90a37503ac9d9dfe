"""Vision projectors (mmproj GGUFs) found beside their models, as LM Studio and llama.cpp's -hf keep them."""
from __future__ import annotations

from pathlib import Path

from files.gguf_header import metadata_or_none, read_gguf_header


def find_projector(model: Path) -> Path | None:
    """The projector for `model` in its folder: one made for its embedding size, `mmproj` in its name first."""
    try:
        header = read_gguf_header(model)
        arch = header.metadata.get("general.architecture")
        n_embd = header.metadata.get(f"{arch}.embedding_length")
        siblings = sorted(p for p in model.parent.iterdir() if p.suffix.lower() == ".gguf" and p.name != model.name)
    except (OSError, ValueError, RecursionError):
        return None
    if arch == "clip":
        return None
    found = []
    for path in siblings:
        meta = projector_metadata(path)
        if meta is None or meta.get("clip.has_vision_encoder") is not True:
            continue
        fits = meta.get("clip.vision.projection_dim") == n_embd
        found.append((not fits, "mmproj" not in path.name.lower(), path.name, path))
    return min(found)[3] if found else None


def projector_metadata(path: Path) -> dict | None:
    """A GGUF's metadata if it is a projector (general.architecture "clip"), else None."""
    meta = metadata_or_none(path)
    return meta if meta is not None and meta.get("general.architecture") == "clip" else None


def is_projector(path: Path) -> bool:
    return projector_metadata(path) is not None
