"""A fast reader of a GGUF file's header: its metadata and tensor list, skipping the big arrays.

`gguf.GGUFReader` parses every element of every array, which takes seconds for a 262k-token
vocabulary; listing models and planning a load only need the scalars and the tensor types.
Every length is checked against the file size: the file is untrusted input.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from basics.errors import ModelLoadError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
MAX_KEYS = 1 << 16
MAX_TENSORS = 1 << 20


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type_name: str  # "Q4_K", "F32"...
    n_bytes: int
    dims: tuple[int, ...] = ()
    offset: int = 0  # from the start of the data section
    block: int = 1  # elements a block of this type holds (ne[0] must be a multiple)


@dataclass(frozen=True)
class GGUFHeader:
    metadata: dict  # scalars and strings; arrays as their length only, except short ones
    tensors: tuple[TensorEntry, ...]
    data_offset: int = 0  # where tensor data starts (the header's end, aligned)
    types: dict | None = None  # key -> GGUF value type (arrays: (9, item type))
    array_spans: dict | None = None  # key -> (start, end) of an array's items in the file (its own bytes, to hash)


def read_gguf_header(path: Path, *, keep_arrays_up_to: int = 64) -> GGUFHeader:
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            return _Reader(f, size, keep_arrays_up_to).header()
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{path.name} is not a readable GGUF file: {e}") from None


def metadata_or_none(path: Path) -> dict | None:
    """A GGUF file's metadata, or None where it is not a file or cannot be read (for looking through a folder)."""
    try:
        return read_gguf_header(path).metadata if path.is_file() else None
    except (OSError, ValueError, RecursionError, ModelLoadError):
        return None


class HeaderCut(ValueError):
    """The bytes end before the header does (a partial read of a remote file: read more)."""


def parse_gguf_header(data: bytes, *, total_size: int) -> GGUFHeader:
    """A header from the first bytes of a GGUF file of `total_size` bytes; HeaderCut when more are needed."""
    try:
        return _Reader(io.BytesIO(data), total_size, 64).header()
    except (struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"not a readable GGUF header: {e}") from None


class _Reader:
    def __init__(self, f: BinaryIO, size: int, keep: int):
        self.f, self.size, self.keep = f, size, keep
        self._last_item = 0

    def header(self) -> GGUFHeader:
        if self.f.read(4) != b"GGUF":
            raise ValueError("no GGUF signature")
        version = self.scalar("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_keys = self.scalar("<Q"), self.scalar("<Q")
        if n_keys > MAX_KEYS or n_tensors > MAX_TENSORS:
            raise ValueError("implausible header counts")
        metadata, types, spans = {}, {}, {}
        for _ in range(n_keys):
            key = self.string()
            kind = self.scalar("<I")
            if key in metadata:
                raise ValueError(f"the key {key!r} appears twice")
            start = self.f.tell()
            metadata[key] = self.value(kind)
            types[key] = (kind, self._last_item) if kind == _ARRAY else kind
            if kind == _ARRAY:
                spans[key] = (start, self.f.tell())
        # deferred: gguf (~90 ms to import), only for its tables
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        tensors = []
        for _ in range(n_tensors):
            name = self.string()
            n_dims = self.scalar("<I")
            if n_dims > 8:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
            dims = [self.scalar("<Q") for _ in range(n_dims)]
            raw_kind = self.scalar("<I")
            try:
                kind = GGMLQuantizationType(raw_kind)
                block, type_size = GGML_QUANT_SIZES[kind]
            except (ValueError, KeyError):
                raise ValueError(f"tensor {name!r} has an unknown type {raw_kind}") from None
            offset = self.scalar("<Q")
            count = 1
            for d in dims:
                count *= d
            tensors.append(TensorEntry(name, kind.name, count // block * type_size, tuple(dims), offset, block))
        align = metadata.get("general.alignment", 32)
        end = self.f.tell()
        data_offset = end + (-end % align) if isinstance(align, int) and align > 0 else end
        return GGUFHeader(metadata, tuple(tensors), data_offset, types, spans)

    def scalar(self, fmt: str):
        n = struct.calcsize(fmt)
        data = self.f.read(n)
        if len(data) != n:
            raise HeaderCut("the data ends inside the header")
        return struct.unpack(fmt, data)[0]

    def string(self, *, keep: bool = True) -> str | None:
        n = self.scalar("<Q")
        if n > self.size - self.f.tell():
            raise ValueError("a string runs past the end of the file")
        if not keep:
            self.f.seek(n, 1)
            return None
        data = self.f.read(n)
        if len(data) != n:
            raise HeaderCut("the data ends inside the header")
        return data.decode("utf-8")

    def skip_strings(self, n: int) -> None:
        """Skip `n` length-prefixed strings reading large blocks (a 262k-token vocabulary in ~0.1 s)."""
        base = self.f.tell()
        buf, off = self.f.read(1 << 22), 0
        for _ in range(n):
            if off + 8 > len(buf):
                base += off
                self.f.seek(base)
                buf, off = self.f.read(1 << 22), 0
                if len(buf) < 8:
                    raise HeaderCut("the data ends inside the header")
            (length,) = _U64.unpack_from(buf, off)
            if length > self.size:
                raise ValueError("a string runs past the end of the file")
            off += 8 + length
        self.f.seek(base + off)

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown metadata type {kind}")
        item, n = self.scalar("<I"), self.scalar("<Q")
        self._last_item = item
        if n > self.size:
            raise ValueError("an array is longer than the file")
        keep = n <= self.keep
        if item in _SCALARS:
            keep = n <= max(self.keep, 1024)  # per-layer hyperparameters are checked value by value
            width = struct.calcsize(_SCALARS[item])
            if not keep:
                self.f.seek(width * n, 1)
                return _Skipped(n)
            return [self.scalar(_SCALARS[item]) for _ in range(n)]
        if item == _STRING:
            if not keep:
                self.skip_strings(n)
                return _Skipped(n)
            return [self.string() for _ in range(n)]
        raise ValueError(f"arrays of type {item} are not supported")


class _Skipped(int):
    """An array that was not read: its length."""
