"""A GGUF file checked before llama.cpp sees it: every value llama.cpp asserts on or indexes with.

A GGML_ASSERT aborts the whole process (the window, the server), so a file from the Hub or the user's disk
must never reach one. These checks refuse what is out of range or of the wrong type with a message that
names the key; runtimes/load_probe.py is the second line (a first load in a child process).
"""
from __future__ import annotations

import math
from pathlib import Path

from basics.errors import ModelLoadError
from files.gguf_header import GGUFHeader, read_gguf_header

INTS = {0, 1, 2, 3, 4, 5, 10, 11}  # u8 i8 u16 i16 u32 i32 u64 i64
FLOATS = {6, 12}
TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "a string",
              10: "u64", 11: "i64", 12: "f64"}
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS
MAX_EXPERTS = 512
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 63  # GGML_MAX_NAME less its NUL


def read_checked_header(path: Path) -> GGUFHeader:
    """The header of `path`, checked; ModelLoadError names the first problem."""
    header = read_gguf_header(path)
    check_header(header, file_size=path.stat().st_size, name=path.name)
    return header


def check_header(header: GGUFHeader, *, file_size: int, name: str, projector: bool = False) -> None:
    """`projector`: a vision projector (runtimes/vision.py checks its own keys): values and tensors only."""
    _Check(header, file_size, name).run(projector=projector)


class _Check:
    def __init__(self, header: GGUFHeader, file_size: int, name: str):
        self.meta, self.types = header.metadata, header.types or {}
        self.header, self.size, self.name = header, file_size, name
        self.arch = ""

    def fail(self, why: str):
        raise ModelLoadError(f"{self.name} cannot be loaded: {why}.")

    def run(self, *, projector: bool = False) -> None:
        arch = self.meta.get("general.architecture")
        if self.types.get("general.architecture") != 8 or not arch:
            self.fail("it names no architecture (general.architecture)")
        self.arch = arch
        self.check_numbers_are_finite()
        if not projector:
            self.check_hyperparameters()
            self.check_vocabulary()
        self.check_tensors()

    # -- values -----------------------------------------------------------------------------------

    def type_of(self, key: str) -> str:
        t = self.types.get(key)
        if isinstance(t, tuple):
            return f"an array of {TYPE_NAMES.get(t[1], 'arrays')}"
        return TYPE_NAMES.get(t, "of an unknown type")

    def integer(self, key: str, lo: int, hi: int, *, required: bool = False, per_layer: int = 0):
        """An integer hyperparameter `ARCH.key` in [lo, hi]; with `per_layer`, an array of that many is allowed."""
        full = f"{self.arch}.{key}"
        if full not in self.meta:
            if required:
                self.fail(f"{full} is missing")
            return None
        t, v = self.types.get(full), self.meta[full]
        if t in INTS:
            values = [v]
        elif per_layer and isinstance(t, tuple) and t[1] in INTS and isinstance(v, list):
            if len(v) != per_layer:
                self.fail(f"{full} has {len(v)} values for {per_layer} layers")
            values = v
        else:
            self.fail(f"{full} is {self.type_of(full)}, not an integer")
        for x in values:
            if not lo <= x <= hi:
                self.fail(f"{full} is {x}, outside {lo}..{hi}")
        return v

    def check_numbers_are_finite(self) -> None:
        for key, t in self.types.items():
            v = self.meta[key]
            if t in FLOATS and not math.isfinite(v):
                self.fail(f"{key} is {v}")
            if isinstance(t, tuple) and t[1] in FLOATS and isinstance(v, list) and not all(map(math.isfinite, v)):
                self.fail(f"{key} holds a value that is not a finite number")

    def check_hyperparameters(self) -> None:
        n_layer = self.integer("block_count", 1, MAX_LAYERS, required=True)
        self.integer("context_length", 1, 1 << 24, required=True)
        self.integer("nextn_predict_layers", 0, n_layer)  # MTP blocks are among the layers (a GGML assertion)
        n_embd = self.integer("embedding_length", 1, 1 << 17, required=True)
        self.integer("feed_forward_length", 0, 1 << 20, per_layer=n_layer)
        heads = self.integer("attention.head_count", 0, 1 << 12, per_layer=n_layer)
        kv_heads = self.integer("attention.head_count_kv", 0, 1 << 12, per_layer=n_layer)
        k_len = self.integer("attention.key_length", 1, 1 << 14)
        self.integer("attention.value_length", 1, 1 << 14)
        rope = self.integer("rope.dimension_count", 0, 1 << 14)
        self.integer("attention.sliding_window", 0, 1 << 24)
        experts = self.integer("expert_count", 0, MAX_EXPERTS) or 0
        used = self.integer("expert_used_count", 0, MAX_EXPERTS) or 0
        if used > experts or (experts and not used):
            self.fail(f"{self.arch}.expert_used_count is {used} with {experts} experts")
        per_layer = lambda v: v if isinstance(v, list) else [v] * n_layer  # noqa: E731
        heads_l = per_layer(heads if heads is not None else 0)
        kv_l = per_layer(kv_heads) if kv_heads is not None else heads_l
        for i, (h, kv) in enumerate(zip(heads_l, kv_l)):
            if kv > h or (kv and h % kv):
                self.fail(f"layer {i} has {h} attention heads and {kv} KV heads (a whole multiple is needed)")
        first = next((h for h in heads_l if h), 0)
        if first and k_len is None and n_embd % first:
            self.fail(f"the embedding length {n_embd} is not a multiple of the {first} attention heads")
        head_dim = k_len or (n_embd // first if first else n_embd)
        if rope is not None and rope > head_dim:
            self.fail(f"{self.arch}.rope.dimension_count {rope} exceeds the head size {head_dim}")
        align = self.meta.get("general.alignment", 32)
        if "general.alignment" in self.meta and self.types.get("general.alignment") not in INTS:
            self.fail(f"general.alignment is {self.type_of('general.alignment')}, not an integer")
        if not 1 <= align <= 1 << 20 or align & (align - 1):
            self.fail(f"general.alignment is {align}, not a power of two")

    def check_vocabulary(self) -> None:
        tokens_t = self.types.get("tokenizer.ggml.tokens")
        if tokens_t is None:
            self.fail("it has no vocabulary (tokenizer.ggml.tokens)")
        if tokens_t != (9, 8):
            self.fail(f"tokenizer.ggml.tokens is {self.type_of('tokenizer.ggml.tokens')}, not an array of strings")
        n_vocab = _length(self.meta["tokenizer.ggml.tokens"])
        if not 1 <= n_vocab <= 1 << 24:
            self.fail(f"the vocabulary holds {n_vocab} tokens")
        if self.types.get("tokenizer.ggml.model", 8) != 8:
            self.fail("tokenizer.ggml.model is not a string")
        for key, item in (("scores", FLOATS), ("token_type", INTS)):
            full = f"tokenizer.ggml.{key}"
            t = self.types.get(full)
            if t is None:
                continue
            if not (isinstance(t, tuple) and t[1] in item):
                self.fail(f"{full} is {self.type_of(full)}")
            if _length(self.meta[full]) != n_vocab:
                self.fail(f"{full} has {_length(self.meta[full])} entries for {n_vocab} tokens")
        if "tokenizer.ggml.merges" in self.types and self.types["tokenizer.ggml.merges"] != (9, 8):
            self.fail("tokenizer.ggml.merges is not an array of strings")
        for key, t in self.types.items():
            if key.startswith("tokenizer.ggml.") and key.endswith("_token_id") and t not in INTS:
                self.fail(f"{key} is {self.type_of(key)}, not a token id")
            if key.startswith("tokenizer.ggml.add_") and t != 7:
                self.fail(f"{key} is {self.type_of(key)}, not a boolean")
        if self.types.get("tokenizer.chat_template", 8) != 8:
            self.fail("tokenizer.chat_template is not a string")

    def check_tensors(self) -> None:
        tensors = self.header.tensors
        if not tensors:
            self.fail("it holds no tensors")
        align = self.meta.get("general.alignment", 32)
        seen = set()
        for t in tensors:
            if t.name in seen:
                self.fail(f"the tensor {t.name!r} appears twice")
            seen.add(t.name)
            if not t.name or len(t.name.encode()) > MAX_TENSOR_NAME:
                self.fail(f"a tensor name is empty or longer than {MAX_TENSOR_NAME} bytes")
            if not 1 <= len(t.dims) <= MAX_DIMS:
                self.fail(f"the tensor {t.name!r} has {len(t.dims)} dimensions")
            count = 1
            for d in t.dims:
                if not 1 <= d < 1 << 40:
                    self.fail(f"the tensor {t.name!r} has a dimension of {d}")
                count *= d
            if count >= 1 << 50:
                self.fail(f"the tensor {t.name!r} is impossibly large")
            if t.dims[0] % t.block:
                self.fail(f"the tensor {t.name!r} ({t.type_name}) has rows of {t.dims[0]}, not a multiple of "
                          f"{t.block}")
            if t.offset % align:
                self.fail(f"the tensor {t.name!r} is not aligned to {align} bytes")
            if self.header.data_offset + t.offset + t.n_bytes > self.size:
                self.fail(f"the tensor {t.name!r} runs past the end of the file (a cut-off download?)")


def _length(array) -> int:
    """An array's length: short arrays are read as lists, long ones as their length only."""
    return len(array) if isinstance(array, list) else int(array)
