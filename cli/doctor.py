"""`lantern doctor`: what this machine has, and where each model would run."""
from __future__ import annotations

import time
from dataclasses import replace

from app.wiring import auto_slots, plan_load
from basics.errors import LanternError
from machine.hardware import build_advice, detect
from machine.helpers import parse_endpoints
from machine.threads import ThreadChooser
from models.drafts import draft_candidates
from models.info import describe_model
from models.library import ModelLibrary
from runtimes.llama_library import default_threads
from runtimes.runtime import LoadOptions

GiB = 1 << 30


def run_doctor(args) -> int:
    helpers = parse_endpoints(args.rpc) if getattr(args, "rpc", None) else tuple(getattr(args, "saved_helpers", ()))
    hw = detect(helpers)
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
    if helpers:
        print("Helper machines" + (" (used for a model this machine cannot hold alone)" if not args.rpc else ""))
        for h in hw.helpers:
            print(f"  {h.endpoint}: llama.cpp RPC {'.'.join(map(str, h.version))}")
            for d in h.devices:
                print(f"    device {d.index}: {d.free_bytes / GiB:.1f} of {d.total_bytes / GiB:.1f} GiB free")
        for endpoint in helpers:
            if endpoint not in {h.endpoint for h in hw.helpers}:
                print(f"  {endpoint}: not used (the note above says why)")
    print("Backends")
    if hw.llamacpp_version:
        build, advice = build_advice(hw)
        print(f"  llama.cpp (llama-cpp-python {hw.llamacpp_version}): build: {build}")
        print(f"    features: {hw.llamacpp_features}")
        print(f"    threads: {_threads_now()}")
        if advice:
            print(f"    faster: {advice}")
    else:
        print("  llama.cpp: not installed")
    print(f"  MLX: {_mlx(hw.mlx_version)}")
    print(f"  remote servers: {_remote()}")
    print(f"  document search: {_document_search()}")
    print(f"  images: {_images()}")
    print(f"Models (planned for a {args.n_ctx}-token context)")
    kv_type = getattr(args, "kv_cache_type", "f16")
    options = LoadOptions(n_ctx=args.n_ctx, kv_cache_type=kv_type, helpers=tuple(h.endpoint for h in hw.helpers),
                          helpers_when_needed=not getattr(args, "rpc", None))

    library = ModelLibrary()
    drafts = getattr(args, "drafts", None) or {}  # the draft model chosen for a model in the window ("Draft with")
    for name in library.names():  # the built-in models, then the imported and pulled ones
        try:
            plan = plan_load(name, options=_with_draft(options, drafts.get(name), library), hardware=hw)
            line = f"{plan.label}: {plan.reason}" + (f" ({plan.advice})" if plan.advice else "")
            line += _style(plan, args.n_ctx, hw, kv_type) + _drafts(name, library)
        except LanternError as e:
            line = f"cannot run: {e}"
        print(f"  {name}: {line}")
    return 0


def _with_draft(options: LoadOptions, draft: str | None, library: ModelLibrary) -> LoadOptions:
    if draft is None:
        return options
    local = library.get(draft)
    if local is None:
        raise LanternError(f"its draft model {draft!r} is no longer in the library (choose another under Chat "
                           "settings → Draft with)")
    return replace(options, draft_model=local.path)


def _drafts(name: str, library: ModelLibrary) -> str:
    """'; can draft with: a, b' for the library's models with its vocabulary (models/drafts.py)."""
    model = library.get(name)
    found = draft_candidates(model, library.list()) if model is not None else []
    return f"; can draft with: {', '.join(m.name for m in found)}" if found else ""


def _threads_now() -> str:
    """What a model loaded now would compute with: the cores other programs leave free (machine/threads.py)."""
    most = default_threads()
    chooser = ThreadChooser(most)
    time.sleep(0.6)
    threads = chooser.choose()
    if chooser.others is None:
        return f"{most} (the CPU load is unreadable here)"
    return (f"{threads} now, up to {most} (other programs use {chooser.others:.1f} of {chooser.cores} cores; "
            "fewer threads while they keep cores busy)")


def _mlx(version: str | None) -> str:
    """MLX's version, once mlx-lm's loader (and its tokenizer's transformers) imports: what the MLX backend needs."""
    if not version:
        return "not installed"
    try:
        import runtimes.mlx_runtime  # noqa: F401
        import mlx_lm.utils  # noqa: F401 (imports transformers at module level)

        return f"{version}, mlx-lm loads"
    except Exception as e:  # a broken install or a bundle that left part out: said here
        return f"{version}, but mlx-lm cannot load ({type(e).__name__}: {e})"


def _remote() -> str:
    """Whether the remote backend (an OpenAI-compatible server) can run here: it speaks through the openai client."""
    try:
        import openai

        import engine.remote  # noqa: F401

        return f"openai {openai.__version__} (lantern generate --backend remote --remote-url URL)"
    except Exception as e:
        return f"unavailable ({type(e).__name__}: {e})"


def _document_search() -> str:
    """Whether files larger than the context can be searched here (sqlite-vec loads into apsw's SQLite)."""
    try:
        import apsw
        import sqlite_vec

        db = apsw.Connection(":memory:")
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        version = db.execute("SELECT vec_version()").fetchone()[0]
        db.close()
        return f"sqlite-vec {version} in SQLite {apsw.sqlite_lib_version()}"
    except Exception as e:  # a broken install: said here, the rest of Lantern works
        return f"unavailable ({type(e).__name__}: {e})"


def _images() -> str:
    """Whether llama.cpp's mtmd (vision projectors) loads here."""
    try:
        import llama_cpp.mtmd_cpp as mtmd

        return f"llama.cpp's mtmd (media marker {mtmd.mtmd_default_marker().decode()}), for models with a " \
               "vision projector (mmproj) beside them"
    except Exception as e:  # no libmtmd in this install: images are refused with a message, the rest works
        return f"unavailable ({type(e).__name__}: {e})"


def _style(plan, n_ctx: int, hw, kv_type: str = "f16") -> str:
    """'; 4 slots, KV cache 90 MiB …; tool calls: hermes; reasoning: <think></think>' for a planned model ('' for one
    whose file cannot be read). The slots `lantern serve` would run share the context's cells; each keeps its own
    sliding window and recurrent state (models/info.py)."""
    try:
        info = describe_model(plan.path)
    except LanternError:
        return ""
    slots = auto_slots(plan, hw)
    kv = info.kv_bytes(n_ctx or min(info.n_ctx_train or 4096, 8192), slots=slots, kv_type=kv_type)
    if plan.draft_path is not None:  # the draft model's KV cache beside the model's (its weights: in the plan's fit)
        kv += describe_model(plan.draft_path).kv_bytes(n_ctx or min(info.n_ctx_train or 4096, 8192), kv_type=kv_type)
    held = "shared by its slots" if slots > 1 else "one conversation at a time"
    return (f"; {slots} slot{'s' if slots > 1 else ''}, KV cache {kv / 2 ** 20:,.0f} MiB {kv_type} ({held}); tool "
            "calls: "
            f"{info.tool_format}"
            + (f"; reasoning: {info.reasoning}" if info.reasoning else ""))
