"""`lantern doctor` (what this machine has and where each model would run) and `lantern models`."""
from __future__ import annotations

import sys
from pathlib import Path

from backends.runtime import LanternError, LoadOptions

GiB = 1 << 30


def run_doctor(args) -> int:
    from app.wiring import plan_load
    from backends.hardware import detect
    from models.registry import BUILTIN_MODELS

    hw = detect()
    print("Machine")
    print(f"  {hw.os} {hw.arch}, {hw.cpu_cores} cores, {hw.ram_total_bytes / GiB:.1f} GiB RAM "
          f"({hw.ram_available_bytes / GiB:.1f} GiB available)")
    if hw.apple_silicon:
        print(f"  Apple silicon: {hw.ram_total_bytes / GiB:.1f} GiB unified memory")
    for g in hw.gpus:
        print(f"  GPU: {g.name}, {g.total_bytes / GiB:.1f} GiB ({g.free_bytes / GiB:.1f} GiB free)")
    if not hw.gpus and not hw.apple_silicon:
        print("  no GPU found")
    for note in hw.notes:
        print(f"  note: {note}")
    print("Backends")
    if hw.llamacpp_version:
        gpu = hw.llamacpp_gpu_backend or ("GPU" if hw.llamacpp_gpu_offload else "none, CPU only")
        print(f"  llama.cpp (llama-cpp-python {hw.llamacpp_version}): GPU offload: {gpu}")
        print(f"    features: {hw.llamacpp_features}")
    else:
        print("  llama.cpp: not installed")
    print(f"  MLX: {hw.mlx_version or 'not installed'}")
    print(f"Models (planned for a {args.n_ctx}-token context)")
    options = LoadOptions(n_ctx=args.n_ctx)
    for name in BUILTIN_MODELS:
        try:
            plan = plan_load(name, options=options, hardware=hw)
            line = f"{plan.label}: {plan.reason}" + (f" ({plan.advice})" if plan.advice else "")
        except LanternError as e:
            line = f"cannot run: {e}"
        print(f"  {name}: {line}")
    return 0


def run_models(args) -> int:
    from models.library import ModelLibrary

    library = ModelLibrary()
    if args.models_command == "list":
        rows = [(m.name, m.backend, m.quant, f"{m.size_bytes / 1e9:.2f} GB", f"{m.context_length}",
                 m.architecture, "yes" if m.chat_template else "no", m.source + (" (link)" if m.linked else ""))
                for m in library.list()]
        _print_table(("name", "backend", "quant", "size", "context", "architecture", "template", "source"), rows)
        return 0
    if args.models_command == "import":
        for m in library.import_path(args.path, link=args.link, name=args.name):
            print(f"Imported {m.name} ({m.quant}, {m.size_bytes / 1e9:.2f} GB{', linked' if m.linked else ''})")
        return 0
    if args.models_command == "rm":
        freed = library.remove(args.name)
        print(f"Removed {args.name}; {freed / 1e9:.2f} GB freed")
        return 0
    if args.models_command == "convert":
        from models.convert import convert_gguf_to_mlx
        from models.registry import resolve_model

        src = resolve_model(args.path)
        out = Path(args.out) if args.out else src.with_name(src.stem + "-mlx")
        convert_gguf_to_mlx(src, out, overwrite=args.force)
        print(f"Wrote the MLX model to {out}", file=sys.stderr)
        print(out)
        return 0
    raise AssertionError(args.models_command)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
