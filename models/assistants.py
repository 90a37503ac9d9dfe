"""Gemma 4's MTP heads, shipped as a separate "assistant" GGUF (gemma4-assistant), found beside their model as
projectors are: in its folder or an `MTP/` folder in it, as llama.cpp users and tools keep them."""
from __future__ import annotations

from pathlib import Path

from files.gguf_header import metadata_or_none
from runtimes.llama_mtp import ASSISTANT_TARGETS, MtpUnavailable, check_assistant, is_assistant

FOLDERS = (".", "MTP", "mtp")


def assistant_metadata(path: Path) -> dict | None:
    """A GGUF's metadata if it is an assistant, else None (unreadable files are not assistants)."""
    meta = metadata_or_none(path)
    return meta if meta is not None and is_assistant(meta) else None


def is_assistant_file(path: Path) -> bool:
    return path.suffix.lower() == ".gguf" and assistant_metadata(path) is not None


def find_assistant(model: Path) -> Path | None:
    """The assistant made for `model` (a GGUF) beside it: the one that fits its family, hidden size and vocabulary,
    the first by name where several do."""
    meta = metadata_or_none(model)
    if meta is None or meta.get("general.architecture") not in ASSISTANT_TARGETS:
        return None
    for folder in FOLDERS:
        try:
            paths = sorted(p for p in (model.parent / folder).iterdir() if p.suffix.lower() == ".gguf" and p != model)
        except OSError:
            continue
        for path in paths:
            found = assistant_metadata(path)
            if found is None:
                continue
            try:
                check_assistant(found, meta, assistant_name=path.name, model_name=model.name)
            except MtpUnavailable:
                continue
            return path
    return None
