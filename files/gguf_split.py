"""Joining a GGUF split into parts (`name-00001-of-00003.gguf`...) into one file, with the gguf package.

One file is one model everywhere in Lantern: the header reader, the MLX converter and the library
all see a single .gguf, and llama.cpp loads it like any other.
"""
from __future__ import annotations

import re
from pathlib import Path

from basics.errors import LanternError

PART = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class SplitError(LanternError):
    pass


def split_parts(first: Path) -> list[Path]:
    """All parts of the split `first` belongs to, in order; checks that every one is there."""
    m = PART.match(first.name)
    if not m:
        raise SplitError(f"{first.name} is not part of a split GGUF (name-00001-of-0000N.gguf).")
    count = int(m["count"])
    parts = [first.with_name(f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise SplitError(f"Parts of {m['stem']} are missing: {', '.join(missing)}.")
    return parts


def join_split_gguf(first: Path, out: Path) -> Path:
    """Write the split `first` belongs to as one GGUF file `out` (beside, then renamed)."""
    # deferred: gguf (~90 ms to import), only for its tables
    import gguf

    parts = split_parts(first)
    readers = [gguf.GGUFReader(str(p)) for p in parts]
    arch = readers[0].fields["general.architecture"].contents()
    partial = out.with_name(out.name + ".joining")
    writer = gguf.GGUFWriter(str(partial), arch)
    try:
        for field in readers[0].fields.values():
            if field.name == "general.architecture" or field.name.startswith(("GGUF.", "split.")):
                continue  # written by GGUFWriter itself, or describing the split that is going away
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
        tensors = [t for r in readers for t in r.tensors]
        for t in tensors:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for r in readers:
            for t in r.tensors:
                writer.write_tensor_data(t.data, tensor_endianess=r.endianess)
        writer.close()
        partial.replace(out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return out
