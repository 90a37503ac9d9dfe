"""Which models in the library can draft for a model: a GGUF with the same vocabulary, smaller than the model.

The list reads only the files' headers (the tokens, their kinds and the special ids, hashed); the load checks the pair
token by token again (engine/draft_model.py), so a file changed in between is still caught there.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from basics.errors import LanternError
from files.gguf_header import read_gguf_header
from models.assistants import find_assistant
from models.facts import facts_of
from models.info import describe_model
from models.library import LocalModel
from runtimes.llama_mtp import ASSISTANT_ARCH, MtpUnavailable, check_assistant

# the special tokens' ids; with the tokens and their kinds, what makes two vocabularies one
SPECIAL_IDS = ("bos", "eos", "eot", "eom", "pad", "unknown", "sep", "cls", "mask")
_SPANS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")


def vocabulary_of(path: str | os.PathLike) -> str | None:
    """A digest of the GGUF's vocabulary; None when it has none or cannot be read."""
    try:
        stat = os.stat(path)
        return _vocabulary(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None


@lru_cache(maxsize=256)
def _vocabulary(path: str, _size: int, _mtime_ns: int) -> str | None:
    try:
        header = read_gguf_header(Path(path))
    except (LanternError, OSError):
        return None
    spans, meta = header.array_spans or {}, header.metadata
    if "tokenizer.ggml.tokens" not in spans:
        return None
    digest = hashlib.sha256()
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre",
                *(f"tokenizer.ggml.{name}_token_id" for name in SPECIAL_IDS)):
        digest.update(f"{key}={meta.get(key)!r};".encode())
    with open(path, "rb") as f:
        for key in _SPANS:
            start, end = spans.get(key, (0, 0))
            f.seek(start)
            left = end - start
            while left > 0:
                block = f.read(min(left, 1 << 22))
                if not block:
                    return None  # the file ends early: damaged
                digest.update(block)
                left -= len(block)
    return digest.hexdigest()


def draft_candidates(model: LocalModel, library: list[LocalModel]) -> list[LocalModel]:
    """The models in `library` that can draft for `model`: GGUF chat models with its vocabulary, smaller than it
    (recurrent ones too: their state is put back after each draft), and the Gemma 4 assistants made for it."""
    if model.format != "gguf" or (vocabulary := vocabulary_of(model.path)) is None:
        return []
    found = []
    for other in library:
        if other.format != "gguf" or other.size_bytes >= model.size_bytes or other.path == model.path:
            continue
        try:
            kind = facts_of(other.path).get("kind")
            if kind == "drafter" and _assists(other, model):
                pass  # a Gemma 4 assistant made for this model: it drafts as its MTP heads
            elif kind != "chat":
                continue  # an embedding model
        except (LanternError, OSError, ValueError):
            continue
        if vocabulary_of(other.path) == vocabulary:
            found.append(other)
    return sorted(found, key=lambda m: m.size_bytes)


def _assists(assistant: LocalModel, model: LocalModel) -> bool:
    try:
        check_assistant(read_gguf_header(Path(assistant.path)).metadata, read_gguf_header(Path(model.path)).metadata,
                        assistant_name=assistant.name, model_name=model.name)
    except (MtpUnavailable, LanternError, OSError):
        return False
    return True


def mtp_blocks(model: LocalModel) -> int:
    """How many MTP blocks can draft for the model: its GGUF's, or those of the Gemma 4 assistant beside it (0: none,
    or not a GGUF)."""
    if model.format != "gguf":
        return 0
    try:
        own = describe_model(model.path).mtp_layers
        if own:
            return own
        assistant = find_assistant(Path(model.path))
        if assistant is None:
            return 0
        value = read_gguf_header(assistant).metadata.get(f"{ASSISTANT_ARCH}.nextn_predict_layers")
        return value if isinstance(value, int) and value > 0 else 0
    except (LanternError, OSError):
        return 0
