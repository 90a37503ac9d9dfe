"""The `lantern` command line: chat and generate in the terminal."""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

from app.settings import FLASH_ATTN, SettingsError, load_settings, settings_path
from app.wiring import AUTO, start_worker
from basics.errors import LanternError
from cli import worker_command
from engine.engine import EngineOptions
from engine.events import Finished, GenerationRequest, TextDelta
from engine.sampling import SamplingParams
from machine.helpers import parse_endpoints
from files import owned_files
from models.library import ModelLibrary
from models.registry import BUILTIN_MODELS, STARTER_MODEL
from runtimes.load_probe_child import child_main
from runtimes.spread_child import SPREAD_ARG, child_main as spread_child_main
from runtimes.runtime import MTP_CHOICES, LoadOptions


def _add_model_flags(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("--model", required=required,
                   help=f"a model name ({', '.join(BUILTIN_MODELS)}), a .gguf file or an MLX model folder")
    p.add_argument("--backend", default="auto", choices=["auto", "llamacpp", "mlx", "remote"],
                   help="auto: chosen for this machine (`lantern doctor` says why); remote: an OpenAI-compatible server")
    p.add_argument("--remote-url", default=None, help="the remote server's base URL, such as http://gpu-box:8000/v1")
    p.add_argument("--remote-key", default=None, help="the remote server's API key (or LANTERN_REMOTE_KEY)")
    p.add_argument("--n-ctx", type=int, default=4096, help="context size in tokens (0: the model's own, up to 8192)")
    p.add_argument("--n-gpu-layers", type=int, default=None,
                   help="layers to put on the GPU (-1: all; default: as many as fit)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: Lantern picks)")
    p.add_argument("--batch-size", type=int, default=512, help="prompt tokens computed per step")
    p.add_argument("--kv-cache-type", default="f16", choices=["f16", "q8_0", "q4_0"],
                   help="the KV cache's type (llama.cpp): q8_0 about halves its memory, q4_0 about quarters it (both "
                        "turn flash attention on)")
    p.add_argument("--flash-attn", default="auto", choices=["auto", "on", "off"],
                   help="flash attention (llama.cpp); auto: off on the CPU, llama.cpp's choice on a GPU")
    p.add_argument("--slots", type=int, default=None,
                   help="conversations computed at once in one batch, sharing the context (llama.cpp; serve: 4 where "
                        "the model can batch, else 1; chat and generate: 1)")
    p.add_argument("--projector", default=None, metavar="PATH|none",
                   help="a vision projector (mmproj GGUF) for the model; default: one found beside the model file")
    p.add_argument("--allow-long-context", action="store_true", help="allow a context beyond the model's training")
    p.add_argument("--prompt-lookup", action=argparse.BooleanOptionalAction, default=True,
                   help="draft tokens from the conversation and verify them in one pass (default: on)")
    p.add_argument("--draft-max", type=int, default=EngineOptions().draft_max, help="longest draft to verify")
    p.add_argument("--draft-model", default=None, metavar="NAME|PATH",
                   help="a small model with the same vocabulary that drafts tokens for the model to verify in one "
                        "pass, or a Gemma 4 assistant (used where it pays on this device; one conversation at a "
                        "time)")
    p.add_argument("--rpc", default=None, metavar="HOST:PORT,...",
                   help="helper machines (`lantern worker` on each): the model is spread over them and this machine "
                        "by free memory")
    p.add_argument("--mtp", choices=MTP_CHOICES, default="auto",
                   help="draft with the model's own multi-token-prediction heads, where its GGUF has them or a Gemma "
                        "4 assistant is in its folder (auto: where it runs on a GPU; one conversation at a time)")


PRESET_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "max_tokens")


def _add_sampling_flags(p: argparse.ArgumentParser, *, temperature: float) -> None:
    # None: not given, so a preset (or the default below) decides
    d = SamplingParams()
    p.set_defaults(fallback=dict(temperature=temperature, top_k=d.top_k, top_p=d.top_p, min_p=d.min_p,
                                 repeat_penalty=d.repeat_penalty, max_tokens=512))
    p.add_argument("--preset", default=None, help="a preset's sampling (and, in chat, its system prompt): "
                   "Balanced, Precise, Creative, Coder, Concise, or one of yours; flags given override it")
    p.add_argument("--temperature", type=float, default=None, help=f"0 is greedy (default {temperature})")
    p.add_argument("--top-k", type=int, default=None, help=f"default {d.top_k}")
    p.add_argument("--top-p", type=float, default=None, help=f"default {d.top_p}")
    p.add_argument("--min-p", type=float, default=None, help=f"default {d.min_p}")
    p.add_argument("--repeat-penalty", type=float, default=None, help=f"default {d.repeat_penalty}")
    p.add_argument("--presence-penalty", type=float, default=d.presence_penalty)
    p.add_argument("--frequency-penalty", type=float, default=d.frequency_penalty)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="default 512")
    p.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lantern", description="Local LLM chat with latency as its edge. "
                                     "With no command, the window opens.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command")
    chat = sub.add_parser("chat", help="chat in the terminal")
    _add_model_flags(chat)
    _add_sampling_flags(chat, temperature=0.7)
    chat.add_argument("--system", default=None, help="system prompt")
    gen = sub.add_parser("generate", help="one raw completion, streamed to stdout")
    _add_model_flags(gen)
    _add_sampling_flags(gen, temperature=0.0)
    gen.add_argument("prompt")
    _add_bench(sub)
    serve = _add_serve(sub)
    doctor = sub.add_parser("doctor", help="this machine, its backends, and where each model would run")
    doctor.add_argument("--n-ctx", type=int, default=4096, help="the context size to plan for")
    doctor.add_argument("--kv-cache-type", default="f16", choices=["f16", "q8_0", "q4_0"],
                        help="the KV cache type to plan for")
    doctor.add_argument("--rpc", default=None, metavar="HOST:PORT,...",
                        help="helper machines to ask and plan every model over (default: those of Settings, for a "
                             "model this machine cannot hold alone)")
    _add_models(sub)
    mcp = sub.add_parser("mcp", help="the MCP servers in mcp.json (the window's Tools page)")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", required=True)
    listing = mcp_sub.add_parser("list", help="each server with its state and tools (starts the enabled ones)")
    listing.add_argument("--timeout", type=float, default=30.0, help="seconds a server has to answer")
    worker_command.add_parser(sub)
    _apply_saved_settings(parser, {"chat": chat, "generate": gen, "serve": serve, "doctor": doctor})
    return parser


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="prompt lookup against plain decoding and llama-cpp-python")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--workload", action="append", choices=["copy", "revision", "open-ended"])
    bench.add_argument("--no-peers", action="store_true", help="skip llama-cpp-python")
    bench.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--repeats", type=int, default=3, help="runs per Lantern configuration (median kept)")
    bench.add_argument("--backends", action="store_true",
                       help="instead: llama.cpp and MLX side by side on the same SmolLM2 weights")
    bench.add_argument("--server", action="store_true",
                       help="instead: the endpoint's cost, and against llama-cpp-python's server on 6 turns")


def _add_serve(sub) -> argparse.ArgumentParser:
    serve = sub.add_parser("serve", help="serve the OpenAI-compatible endpoint (http://127.0.0.1:8000/v1)")
    _add_model_flags(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback needs --api-key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or LANTERN_API_KEY)")
    serve.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeatable)")
    serve.add_argument("--max-queue", type=int, default=16, help="requests waiting at most (then 429)")
    serve.add_argument("--idle-unload", type=float, metavar="MINUTES",
                       help="unload the model after this long without requests (the next one loads it again)")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without an API key")
    serve.add_argument("--allow-host", action="append", default=[],
                       help="a Host name to answer besides the bound address and localhost (repeatable)")
    return serve


def _add_models(sub) -> None:
    models = sub.add_parser("models", help="manage models")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="the local models")
    search = msub.add_parser("search", help="search the Hugging Face Hub (GGUF; --mlx for MLX)")
    search.add_argument("query")
    search.add_argument("--mlx", action="store_true")
    search.add_argument("--limit", type=int, default=20)
    info = msub.add_parser("info", help="a Hub repository's models by quant, with sizes and fit for this machine")
    info.add_argument("repo")
    info.add_argument("--n-ctx", type=int, default=4096, help="the context size to check the fit for")
    pull = msub.add_parser("pull", help="download REPO[:QUANT|FILE] (resumes; checks sha256)")
    pull.add_argument("spec")
    pull.add_argument("--name", default=None, help="the local name (default: from the repository and quant)")
    imp = msub.add_parser("import", help="import a GGUF file, an MLX folder, or a folder of GGUF files")
    imp.add_argument("path")
    imp.add_argument("--link", action="store_true", help="point at the file instead of copying it")
    imp.add_argument("--name", default=None, help="the model's name (default: from the file name)")
    cat = msub.add_parser("catalog", help="the catalog of current models, with fit and speed for this machine")
    cat.add_argument("action", nargs="?", choices=["show", "refresh"], default="show",
                     help="refresh (maintainers): read every entry's file from the Hub into the bundled catalog")
    cat.add_argument("--n-ctx", type=int, default=8192, help="the context size to check the fit for")
    cat.add_argument("--check", action="store_true", help="read unchecked entries' figures from the Hub first")
    cat.add_argument("--only", nargs="+", metavar="NAME", help="refresh only these entries")
    cat.add_argument("--out", default=None, help="the catalog file refresh rewrites (default: models/data/catalog.json)")
    rm = msub.add_parser("rm", help="delete a local model")
    rm.add_argument("name")
    convert = msub.add_parser("convert", help="convert a GGUF file (Q4_0, Q4_1, Q8_0, F16, F32) to an MLX folder")
    convert.add_argument("path", help="a .gguf file or a model name")
    convert.add_argument("--to", required=True, choices=["mlx"])
    convert.add_argument("out", nargs="?", help="the MLX folder to write (default: beside the file)")
    convert.add_argument("--force", action="store_true", help="replace the folder if it exists")


def _apply_saved_settings(parser: argparse.ArgumentParser, subs: dict) -> None:
    """The window's saved settings are the command line's defaults; flags still override them."""
    try:
        s = load_settings(settings_path())
    except SettingsError as e:
        print(f"lantern: {e} Using the built-in defaults.", file=sys.stderr)
        return
    model = dict(saved_model=s.model, backend=s.backend, remote_url=s.remote_url, n_ctx=s.n_ctx,
                 n_gpu_layers=s.n_gpu_layers, prompt_lookup=s.prompt_lookup, draft_max=s.draft_max,
                 kv_cache_type=s.kv_cache_type, flash_attn=s.flash_attn, threads=s.threads, batch_size=s.batch_size,
                 saved_helpers=tuple(s.helpers))
    # below a --preset, above the built-in defaults (apply_preset): flags, then a preset, then these
    saved = dict(top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, repeat_penalty=s.repeat_penalty,
                 max_tokens=s.max_tokens, temperature=s.temperature, system=s.system_prompt or None)
    subs["chat"].set_defaults(**model, fallback={**subs["chat"].get_default("fallback"), **saved})
    subs["generate"].set_defaults(**model)  # a raw completion stays greedy unless asked
    subs["serve"].set_defaults(**model, host=s.server_host, port=s.server_port, api_key=s.server_api_key)
    subs["doctor"].set_defaults(n_ctx=s.n_ctx, kv_cache_type=s.kv_cache_type, saved_helpers=tuple(s.helpers),
                                drafts={m: d.draft_model for m, d in s.model_defaults.items() if d.draft_model})


def _version() -> str:
    try:
        return version("lantern")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _model(args) -> str | None:
    """--model, else the model chosen in the window (a remote server picks its own)."""
    if args.model or args.backend == "remote":
        return args.model
    return getattr(args, "saved_model", None)


def _options(args) -> LoadOptions:
    return LoadOptions(n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, n_threads=args.threads,
                       n_batch=args.batch_size,
                       kv_cache_type=args.kv_cache_type, flash_attn=FLASH_ATTN[args.flash_attn],
                       allow_context_beyond_training=args.allow_long_context, slots=_slots(args),
                       projector=_projector(getattr(args, "projector", None)),
                       draft_model=getattr(args, "draft_model", None) or None, mtp=getattr(args, "mtp", "auto"),
                       **_helpers(args))


def _helpers(args) -> dict:
    """--rpc's helpers, used for this model; else the saved ones, used only where it does not fit here alone."""
    if args.rpc:
        return dict(helpers=parse_endpoints(args.rpc))
    saved = tuple(getattr(args, "saved_helpers", ()) or ())
    return dict(helpers=saved, helpers_when_needed=True) if saved else {}


def _slots(args) -> int:
    """--slots, else Lantern's choice for `serve` (app/wiring.py: 4 where the model batches) and 1 for one user."""
    if args.slots is not None:
        return args.slots
    return AUTO if getattr(args, "command", None) == "serve" else 1


def _projector(given: str | None) -> str | None:
    """--projector: None looks beside the model, "none" (or "") loads none, else the file (checked at load)."""
    if given is None:
        return None
    return "" if given.strip().lower() in ("", "none") else str(Path(given).expanduser())


def _remote(args) -> dict:
    return dict(remote_url=args.remote_url, remote_key=args.remote_key or os.environ.get("LANTERN_REMOTE_KEY"))


def _engine_options(args) -> EngineOptions:
    return EngineOptions(prompt_lookup=args.prompt_lookup, draft_max=args.draft_max)


def apply_preset(args) -> None:
    """Fill the sampling flags not given from --preset (the saved settings' presets, then the built-in ones), then
    from the saved settings (chat) or the built-in defaults; in chat, the system prompt likewise."""
    preset = None
    if args.preset:
        preset = load_settings(settings_path()).preset(args.preset)  # SettingsError names the presets there are
    for name in PRESET_FIELDS:
        if getattr(args, name) is None:
            chosen = getattr(preset, name, None) if preset else None
            setattr(args, name, chosen if chosen is not None else args.fallback[name])
    if hasattr(args, "system") and args.system is None:
        args.system = preset.system_prompt if preset and preset.system_prompt else args.fallback.get("system")
    if preset:  # what the preset set, as it stands after the flags given
        shown = [f"{k.replace('_', ' ')} {getattr(args, k)}" for k in preset.overrides() if k in PRESET_FIELDS]
        system = preset.system_prompt and getattr(args, "system", None) == preset.system_prompt
        print(f"Preset {preset.name}: " + ", ".join(shown) + (", with its system prompt" if system else "") + ".",
              file=sys.stderr)


def _sampling(args) -> SamplingParams:
    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repeat_penalty=args.repeat_penalty, presence_penalty=args.presence_penalty,
                          frequency_penalty=args.frequency_penalty, seed=args.seed)


def _stream(worker, request, out) -> tuple[str, Finished]:
    """Print a reply as it streams; return its text and its final event."""
    parts, final = [], None
    for event in worker.submit(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
            out.write(event.text)
            out.flush()
        else:
            final = event
    assert final is not None
    out.write("\n")
    return "".join(parts), final


def _figures(f: Finished) -> str:
    s = f.stats
    extra = f", error: {f.error}" if f.error else ""
    if s.drafted_tokens:
        sources = "; ".join(f"{name} {a}/{d}" for name, (d, a) in s.drafts_by_source.items())
        extra = (f", drafted {s.drafted_tokens}, accepted {s.accepted_tokens} ({s.acceptance_rate:.0%}"
                 f"{': ' + sources if sources else ''}), {s.tokens_per_forward:.2f} tokens/pass") + extra
    return (f"[{s.cached_tokens}/{s.prompt_tokens} prompt tokens reused, TTFT {s.ttft_ms:.0f} ms, "
            f"{s.decode_tokens_per_s:.1f} tok/s, {s.completion_tokens} tokens, {s.backend}, finish: {f.reason}{extra}]")


def run_generate(args) -> int:
    apply_preset(args)
    request = GenerationRequest(prompt=args.prompt, sampling=_sampling(args), max_tokens=args.max_tokens,
                                stop=args.stop)
    worker = start_worker(_model(args), backend=args.backend, options=_options(args),
                          engine_options=_engine_options(args), **_remote(args))
    try:
        worker.wait_ready()
        _, final = _stream(worker, request, sys.stdout)
        print(_figures(final), file=sys.stderr)
        return 0 if final.reason != "error" else 1
    finally:
        worker.close()


def run_chat(args) -> int:
    apply_preset(args)
    worker = start_worker(_model(args), backend=args.backend, options=_options(args),
                          engine_options=_engine_options(args), **_remote(args))
    try:
        worker.wait_ready()
        backend, reason, notes = worker.call(lambda e: (e.backend, e.backend_reason, e.notes)).result()
        name = _model(args) or (STARTER_MODEL if args.backend != "remote" else "the server's model")
        print(f"Lantern chat on {name}, {backend}: {reason}.", file=sys.stderr)
        for note in notes:
            print(note, file=sys.stderr)
        print("Empty line or Ctrl-D to quit.", file=sys.stderr)
        messages = [{"role": "system", "content": args.system}] if args.system else []
        while True:
            try:
                line = input("> " if sys.stdin.isatty() else "")
            except EOFError:
                break
            if not line.strip():
                break
            messages.append({"role": "user", "content": line})
            request = GenerationRequest(messages=list(messages), sampling=_sampling(args),
                                        max_tokens=args.max_tokens, stop=args.stop)
            reply, final = _stream(worker, request, sys.stdout)
            print(_figures(final), file=sys.stderr)
            messages.append({"role": "assistant", "content": reply})
        return 0
    finally:
        worker.close()


def run_serve(args) -> int:
    # deferred: fastapi and uvicorn (~250 ms to import), which only `lantern serve` needs
    from app.server.api import ServerSettings
    from app.server.run import LanternServer, check_bind
    from app.server.service import ModelService, default_opener

    settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key or os.environ.get("LANTERN_API_KEY"),
                              cors_origins=tuple(args.cors_origin), max_queue=args.max_queue, insecure=args.insecure,
                              allowed_hosts=tuple(args.allow_host))
    check_bind(settings)  # before any model loads
    if not 1 <= args.max_queue <= 1024:
        raise LanternError(f"--max-queue must be between 1 and 1024, got {args.max_queue}.")

    library = ModelLibrary()
    model = _model(args) or STARTER_MODEL
    if model not in library.names():
        raise LanternError(f"The server loads models by name ({', '.join(library.names())}), not {model!r}; "
                           "import a file first with `lantern models import PATH`.")
    if args.idle_unload is not None and not args.idle_unload > 0:
        raise LanternError(f"--idle-unload takes a number of minutes above 0, got {args.idle_unload}.")
    service = ModelService(model, models=library.names, max_queue=args.max_queue,
                           idle_unload_s=args.idle_unload * 60 if args.idle_unload else None,
                           open_worker=default_opener(backend=args.backend, options=_options(args),
                                                      engine_options=_engine_options(args)))
    server = LanternServer(service, settings)
    print(f"Lantern serves {model} at http://{args.host}:{args.port}/v1 (Ctrl-C stops it)", file=sys.stderr)
    server.run_forever()
    return 0


def run_bench(args) -> int:
    if getattr(sys, "frozen", False):  # the app leaves the benchmarks and their peers out (packaging/lantern.spec)
        print("lantern bench runs from a source checkout (scripts/setup), not in the installed app.", file=sys.stderr)
        return 2
    # deferred: the benchmarks and their peers (llama-cpp-python's server, openai) are a source checkout's
    from benchmarks import both_backends as bench_backends, endpoint as bench_server, lookup as bench, peer_server
    from benchmarks.doc import machine, write_section

    if args.server:
        lacking = peer_server.missing() if not args.no_peers else []
        if lacking:
            print(f"The peer (llama-cpp-python's server) needs {', '.join(lacking)}: pip install 'lantern[bench]' "
                  "(from a checkout: pip install -e '.[bench]'), or pass --no-peers.", file=sys.stderr)
            return 2

        print(bench_server.run(repeats=args.repeats, write=not args.no_write, peers=not args.no_peers))
        return 0
    if args.backends:
        print(bench_backends.run(repeats=args.repeats, write=not args.no_write))
        return 0

    results = bench.benchmark(threads=args.threads, workloads=tuple(args.workload or bench.WORKLOADS),
                              peers=not args.no_peers, repeats=args.repeats)
    text = bench.table(results)
    if args.json:
        print(bench.to_json(results))
    else:
        print(text)
    if not args.no_write:
        header = (f"Machine: {machine()}  \nModels: copy on gemma3-270m, the others on smollm2-135m-instruct; greedy  \n"
                  f"Command: `.venv/bin/lantern bench --repeats {args.repeats}`  \nDate: {datetime.date.today().isoformat()}\n\n")
        write_section(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md", "lookup",
                      "## Prompt lookup (speculative decoding)\n\n" + header + text + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_load-probe"] and len(argv) == 2:  # the installed app's test load (runtimes/load_probe.py)
        return child_main(argv[1])
    if argv[:1] == [SPREAD_ARG] and len(argv) == 2:  # the installed app's spread model (runtimes/spread_runtime.py)
        return spread_child_main(argv[1])

    owned_files.on_notice = lambda message: print(f"lantern: {message}", file=sys.stderr)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "models_command", None) == "convert" and args.out is None and len(extra) == 1 \
            and not extra[0].startswith("-"):
        args.out = extra[0]  # `models convert PATH --to mlx OUT`: argparse stops at OUT after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        from ui.app import run_window  # deferred: the window's modules, which no command needs

        return run_window()
    # deferred: the doctor's and the models commands' modules (the Hub client, the catalog), for those commands only
    from cli import doctor, mcp_command, models_command as models_cli

    try:
        commands = {"chat": run_chat, "generate": run_generate, "bench": run_bench, "doctor": doctor.run_doctor,
                    "models": models_cli.run_models, "serve": run_serve, "mcp": mcp_command.run_mcp,
                    "worker": worker_command.run_worker}
        return commands[args.command](args)
    except LanternError as e:
        print(f"lantern: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
