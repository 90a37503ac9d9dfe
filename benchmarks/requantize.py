"""A draft model for the starter: the starter itself requantized to another type (the `gguf` package writes Q8_0 and
Q4_0), so a real target/draft pair agrees on most tokens but not on all (the tests and benchmarks/bench_draft_model.py)."""
from __future__ import annotations

from pathlib import Path

import gguf
import gguf.quants as q


def requantized(source: Path, out: Path, quant: str = "Q4_0", *, token: tuple[int, str] | None = None) -> Path:
    """`source` with every Q4_1 (or other quantized) tensor requantized to `quant`; F32 tensors, metadata and
    vocabulary as they are, but for `token`: (id, text) gives that token another text."""
    target = gguf.GGMLQuantizationType[quant]
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for field in reader.fields.values():
        if field.name in ("general.architecture", "general.file_type") or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        value = field.contents()
        if token is not None and field.name == "tokenizer.ggml.tokens":
            value[token[0]] = token[1]
        writer.add_key_value(field.name, value, kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    writer.add_file_type({"Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    for t in reader.tensors:
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            continue
        values = q.dequantize(t.data, t.tensor_type)
        writer.add_tensor(t.name, q.quantize(values, target), raw_shape=q.quant_shape_to_byte_shape(values.shape,
                                                                                                     target),
                          raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
