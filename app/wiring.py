"""Putting a model, a runtime and the engine together."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import machine.hardware
from machine.helpers import probe_all
from basics.errors import ModelLoadError
from engine.auto_worker import AutoWorker
from engine.draft_model import DraftModel
from engine.engine import Engine, EngineOptions
from engine.mtp_drafter import MtpDrafter
from engine.remote import RemoteEngine
from engine.slots import SlotWorker
from engine.state_cache import StateCache
from engine.worker import EngineWorker, Worker, wait_for_retired
from files.gguf_header import read_gguf_header
from models.assistants import find_assistant, is_assistant_file
from models.choice import choose_backend
from models.convert import mlx_copy_of
from models.drafts import vocabulary_of
from models.fit import GiB, check_fit, with_draft
from models.info import describe_model
from models.library import resolve_model
from models.projectors import find_projector, is_projector
from models.spread import spread
from runtimes.llama_mtp import MtpUnavailable, check_assistant
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.mlx_runtime import MlxRuntime
from runtimes.runtime import LoadOptions
from runtimes.spread_runtime import SpreadRuntime

BACKENDS = ("auto", "llamacpp", "mlx", "remote")
AUTO = 0  # LoadOptions.slots: Lantern chooses (DEFAULT_SLOTS where the model can batch, else 1)
DEFAULT_SLOTS = 4
log = logging.getLogger("lantern")


@dataclass(frozen=True)
class LoadPlan:
    """What will be loaded, on which backend, with which options, and why."""

    path: Path
    backend: str
    options: LoadOptions
    reason: str
    advice: str = ""
    draft_path: Path | None = None  # the draft model (options.draft_model) as resolved, loaded beside the model

    @property
    def label(self) -> str:
        if self.backend == "mlx":
            return "mlx"
        if self.options.helpers:
            return f"llamacpp (spread, {len(self.options.helpers) + 1} machines)"
        layers = self.options.n_gpu_layers or 0
        return f"llamacpp ({'CPU' if layers == 0 else 'GPU' if layers == -1 else f'GPU, {layers} layers'})"


def plan_load(model: str | Path | None, *, backend: str = "auto", options: LoadOptions = LoadOptions(),
              hardware=None) -> LoadPlan:
    """Decide where `model` runs (see models/choice.py); nothing is loaded yet."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    options.validate()
    path = resolve_model(model)

    if path.suffix.lower() == ".gguf" and is_projector(path):
        raise ModelLoadError(f"{path.name} is a vision projector, not a model: load the model beside it (Lantern "
                             "finds its projector there).")
    if is_assistant_file(path):
        raise ModelLoadError(f"{path.name} is a Gemma 4 assistant: it drafts for its Gemma 4 model and cannot chat "
                             "by itself. Load the model, and choose the assistant under Draft with (--draft-model), "
                             "or keep it beside the model (Lantern finds it there).")
    info = describe_model(path)
    if hardware is None:
        if not wait_for_retired():  # a model being switched away from still holds memory: measured with it
            log.warning("The previous model is still unloading; %s is fitted to the memory free now", path.name)
        hardware = machine.hardware.detect()
    if options.helpers:
        spread_plan = _plan_helpers(path, info, backend, options, hardware)
        if spread_plan is not None:
            return spread_plan
        options = replace(options, helpers=(), helper_layers=())
    draft_path, info = _plan_draft(options, path, info, hardware) if options.draft_model else (None, info)
    choice = choose_backend(hardware, info, n_ctx=options.n_ctx, backend=backend,
                            n_gpu_layers=options.n_gpu_layers, slots=max(options.slots, 1),
                            kv_type=options.kv_cache_type)
    reason = choice.reason
    if draft_path is not None:
        reason += f"; drafts with {draft_path.name}"
    assistant = draft_path is not None and is_assistant_file(draft_path)
    if choice.backend == "mlx" and assistant:
        raise ModelLoadError(f"{draft_path.name} is a Gemma 4 assistant, which drafts on llama.cpp only, and "
                             f"{path.name} runs on MLX: use --backend llamacpp, or no draft model.")
    if choice.backend == "mlx" and info.format == "gguf":
        path = mlx_copy_of(path)
        reason += f" (the GGUF file converted once to {path})"
    if choice.backend == "mlx":
        if options.mtp == "on":
            raise ModelLoadError("MTP heads draft on llama.cpp only for now; this model runs on MLX. Use --mtp auto "
                                 "or off, or --backend llamacpp.")
        draft_path = mlx_copy_of(draft_path) if draft_path is not None and draft_path.is_file() else draft_path
        return LoadPlan(path, "mlx", options, reason, choice.advice, draft_path)
    if draft_path is not None and not draft_path.is_file():
        raise ModelLoadError(f"The draft model {draft_path.name} is an MLX model, and {path.name} runs on llama.cpp: "
                             "choose a GGUF draft model.")
    options = replace(options, n_gpu_layers=choice.n_gpu_layers)
    if assistant:  # a draft model that is the model's MTP heads: it drafts as they do
        options = replace(options, mtp_assistant=str(draft_path))
        reason = reason.replace(f"; drafts with {draft_path.name}", f"; drafts with its MTP heads ({draft_path.name})")
        draft_path = None
    else:
        beside = find_assistant(path) if not info.mtp_layers and options.mtp != "off" else None
        options, note = _plan_mtp(options, path, info.mtp_layers, on_gpu=choice.n_gpu_layers != 0, assistant=beside)
        reason += note
    if options.projector is None:
        found = find_projector(path)
        options = replace(options, projector=str(found) if found else "")
        if found:
            reason += f"; sees images through {found.name}"
    return LoadPlan(path, "llamacpp", options, reason, choice.advice, draft_path)


def _plan_helpers(path: Path, info, backend: str, options: LoadOptions, hardware) -> LoadPlan | None:
    """The model spread over this machine and the helpers that answer (models/spread.py), or None where the helpers
    are Settings' and the model fits here alone. Everything that can be told before the load is said here."""
    if backend == "mlx" or info.format == "mlx":
        raise ModelLoadError("Helper machines run llama.cpp's RPC backend: an MLX model cannot be spread over them. "
                             "Use a GGUF model, or no helpers.")
    when = options.helpers_when_needed
    alone = replace(hardware, helpers=())  # this machine by itself
    if when and check_fit(alone, info, n_ctx=options.n_ctx, slots=max(options.slots, 1),
                          kv_type=options.kv_cache_type).verdict != "no":
        return None
    if options.n_gpu_layers is not None:
        raise ModelLoadError("With helper machines the layers are planned by each machine's free memory: leave out "
                             "--n-gpu-layers.")
    if options.draft_model:
        raise ModelLoadError("A draft model does not run beside a model spread over helper machines yet: choose no "
                             "draft model, or no helpers.")
    if options.mtp == "on":
        raise ModelLoadError("MTP heads do not draft for a model spread over helper machines yet: use --mtp auto or "
                             "off, or no helpers.")
    found, failed = probe_all(options.helpers)
    if failed and (not when or not found):
        raise ModelLoadError(" ".join(str(e) for e in failed))
    sp = spread(alone, info, found, n_ctx=options.n_ctx, slots=max(options.slots, 1),
                kv_type=options.kv_cache_type, local_gpu=hardware.llamacpp_gpu_offload)
    reason = sp.reason
    if failed:
        reason += "; not used: " + "; ".join(str(e) for e in failed)
    if find_projector(path) is not None and options.projector != "":
        reason += "; images are not sent to helper machines, so it reads text only"
    if info.mtp_layers:
        reason += "; its MTP heads are not used with helpers"
    options = replace(options, helpers=tuple(h.endpoint for h in found), helper_layers=sp.helper_layers,
                      n_gpu_layers=sp.n_gpu_layers, projector="", load_mtp=False, mtp_assistant="")
    return LoadPlan(path, "llamacpp", options, reason)


def _plan_draft(options: LoadOptions, path: Path, info, hardware) -> tuple[Path, object]:
    """The draft model's path, and the model's description with the draft's memory counted in (models/fit.py).
    Everything that can be told from the files is checked here, before anything loads."""
    draft = resolve_model(options.draft_model)
    if draft.suffix.lower() == ".gguf" and is_projector(draft):
        raise ModelLoadError(f"{draft.name} is a vision projector, not a model: it cannot draft.")
    draft_info = describe_model(draft)
    if is_assistant_file(draft):
        return draft, _plan_assistant(draft, draft_info, path, info)
    if draft_info.pooling:
        raise ModelLoadError(f"{draft.name} is an embedding model: it cannot draft text.")
    if draft_info.size_bytes > info.size_bytes:
        raise ModelLoadError(f"The draft model {draft.name} ({draft_info.size_bytes / GiB:.1f} GiB) is larger than "
                             f"{path.name} ({info.size_bytes / GiB:.1f} GiB): drafting with it would be slower than "
                             "the model alone. Choose a small model of the same family.")
    both = with_draft(info, draft_info, n_ctx=options.n_ctx, kv_type=options.kv_cache_type)
    alone = check_fit(hardware, info, n_ctx=options.n_ctx, kv_type=options.kv_cache_type)
    fit = check_fit(hardware, both, n_ctx=options.n_ctx, kv_type=options.kv_cache_type)
    if fit.verdict == "no" and alone.verdict != "no":
        raise ModelLoadError(f"{path.name} fits, but not with the draft model {draft.name} beside it: together they "
                             f"{fit.summary}. Choose a smaller draft model, or none.")
    return draft, both


def _plan_assistant(assistant: Path, assistant_info, path: Path, info):
    """The model's description with a Gemma 4 assistant's weights counted in (it reads the model's cache: no cache
    of its own); ModelLoadError unless it was made for this model."""
    try:
        check_assistant(read_gguf_header(assistant).metadata, read_gguf_header(path).metadata,
                        assistant_name=assistant.name, model_name=path.name)
    except MtpUnavailable as e:
        raise ModelLoadError(str(e)) from None
    ours, theirs = vocabulary_of(path), vocabulary_of(assistant)
    if ours and theirs and ours != theirs:
        raise ModelLoadError(f"{assistant.name} and {path.name} do not have the same vocabulary: choose the "
                             "assistant made for this model.")
    return replace(info, size_bytes=info.size_bytes + assistant_info.size_bytes)


def _plan_mtp(options: LoadOptions, path: Path, heads: int, *, on_gpu: bool,
              assistant: Path | None = None) -> tuple[LoadOptions, str]:
    """Whether the model's `heads` MTP blocks (or the Gemma 4 `assistant` found beside it) load and draft
    (options.mtp), and what the plan's reason says of it."""
    if options.mtp == "off":
        return options, ""
    on = options.mtp == "on"
    what = f"its MTP heads ({assistant.name if assistant is not None else f'{heads} block' + 's' * (heads > 1)})"
    if not heads and assistant is None:
        if on:
            raise ModelLoadError(f"{path.name} has no MTP heads (its GGUF has no nextn_predict_layers, and no Gemma 4 "
                                 "assistant is beside it): --mtp on needs a model that ships them (Qwen3.5/3.6, "
                                 "GLM-4.5 and later, DeepSeek V3, Nemotron 3...; for Gemma 4, its assistant GGUF in "
                                 "the model's folder), or draft with a small model (--draft-model).")
        return options, ""
    if not on and not on_gpu:
        return options, f"; {what} are not used on the CPU, where drafting rarely pays (--mtp on to try)"
    if options.slots > 1:
        if on:
            raise ModelLoadError("MTP heads draft for one conversation at a time for now: use --slots 1 (or leave "
                                 "the slots to Lantern).")
        return options, f"; {what} are not used with {options.slots} slots"
    if assistant is not None:
        return replace(options, mtp_assistant=str(assistant)), f"; drafts with {what}"
    return replace(options, load_mtp=True), f"; drafts with {what}"


def open_drafters(plan: LoadPlan, target) -> list[DraftModel | MtpDrafter]:
    """The plan's draft sources beside prompt lookup: the model's MTP heads, and a draft model loaded where the
    model runs, with its context, its vocabulary checked against the model's (nothing stays loaded when anything
    fails)."""
    drafters: list[DraftModel | MtpDrafter] = []
    if plan.options.load_mtp or plan.options.mtp_assistant:
        try:
            drafters.append(MtpDrafter(target))
        except MtpUnavailable:
            if plan.options.mtp == "on" or plan.options.mtp_assistant == _named_draft(plan):  # asked for: said
                raise
            log.warning("%s: its MTP heads cannot draft here", plan.path.name, exc_info=True)
    if plan.draft_path is None:
        return drafters
    o = plan.options
    options = LoadOptions(n_ctx=target.n_ctx, n_gpu_layers=-1 if o.n_gpu_layers == -1 else 0, n_threads=o.n_threads,
                          n_batch=o.n_batch, flash_attn=o.flash_attn, kv_cache_type=o.kv_cache_type, projector="",
                          allow_context_beyond_training=True)  # beyond its training a draft is only less often right
    runtime = (MlxRuntime if plan.backend == "mlx" else LlamaCppRuntime)(plan.draft_path, options)
    try:
        drafters.append(DraftModel(runtime, target, target_name=plan.path.name))
    except BaseException:
        runtime.close()
        raise
    return drafters


def _named_draft(plan: LoadPlan) -> str | None:
    """The draft model the user named, as a path (an assistant chosen by name is one)."""
    return str(resolve_model(plan.options.draft_model)) if plan.options.draft_model else None


def _open_with_drafters(plan: LoadPlan):
    """The model's runtime and its draft sources; a source that fails to load unloads the model (the heads belong
    to it, and close with it)."""
    runtime = open_runtime(plan)
    try:
        return runtime, open_drafters(plan, runtime)
    except BaseException:
        runtime.close()
        raise


def open_runtime(plan: LoadPlan):
    """Load a planned model (heavy runtimes are imported only now)."""
    if plan.backend == "mlx":
        return MlxRuntime(plan.path, plan.options)
    if plan.options.helpers:
        asked = plan.options

        def replan(gone: frozenset[str]) -> LoadOptions:  # a helper went away: the rest, or this machine alone
            left = tuple(h for h in asked.helpers if h not in gone)
            again = plan_load(plan.path, options=replace(asked, helpers=left, helper_layers=(), n_gpu_layers=None))
            log.info("%s: %s", again.label, again.reason)
            return again.options

        return SpreadRuntime(plan.path, plan.options, replan=replan)
    return LlamaCppRuntime(plan.path, plan.options)


def start_worker(model: str | Path | None, *, backend: str = "auto", options: LoadOptions = LoadOptions(),
                 engine_options: EngineOptions | None = None, state_cache: StateCache | None = None,
                 remote_url: str | None = None, remote_key: str | None = None) -> Worker:
    """Start the engine thread; the model is planned here and loads on the thread (wait_ready() reports a failure)."""
    if engine_options is not None:
        engine_options.validate()  # before any model loads
    if backend == "remote" or remote_url:
        return _remote_worker(model, remote_url, remote_key, backend)

    if options.slots == AUTO:
        return _auto_worker(model, backend, options, engine_options, state_cache)
    if options.slots > 1 and options.draft_model:
        raise ModelLoadError("A draft model runs with one conversation at a time for now: use --slots 1 (or leave "
                             "the slots to Lantern).")
    if options.slots > 1:
        return _slot_worker(model, backend, options, engine_options, state_cache)

    def make() -> Engine:  # on the engine thread: reading the model's metadata is file work too
        plan = plan_load(model, backend=backend, options=options)
        log.info("%s: %s", plan.label, plan.reason)
        runtime, drafters = _open_with_drafters(plan)
        return Engine(runtime, state_cache=state_cache, options=engine_options, backend=plan.label,
                      backend_reason=plan.reason, draft_model=drafters)

    return EngineWorker(make)


def _auto_worker(model, backend: str, options: LoadOptions, engine_options, state_cache):
    """DEFAULT_SLOTS slots where llama.cpp batches conversations, else one (decided once the model is planned)."""
    def decide():
        plan = plan_load(model, backend=backend, options=replace(options, slots=1))
        slots = auto_slots(plan)
        return start_worker(model, backend=backend, options=replace(options, slots=slots),
                            engine_options=engine_options, state_cache=state_cache)

    return AutoWorker(decide)


def auto_slots(plan: LoadPlan, hardware=None) -> int:
    """The slots Lantern runs a planned model with when it chooses (AUTO): DEFAULT_SLOTS where it can batch, else 1
    (and 1 with a draft model or MTP heads, whose caches follow one conversation)."""
    drafts = plan.draft_path is not None or plan.options.load_mtp or bool(plan.options.mtp_assistant)
    return DEFAULT_SLOTS if not drafts and _can_batch(plan, hardware) else 1


def _can_batch(plan: LoadPlan, hardware=None) -> bool:
    """llama.cpp models that write text, where the slots' own windows and recurrent states (each slot keeps its own)
    leave the model fitting where it fits alone: on the GPU, or in RAM.
    MLX runs slots when asked (--slots), but is not chosen for them: its CPU wheel computes a batch's rows one after
    another (1.1x the tokens a second at 4 slots, docs/benchmarks.md), and on Metal it has not been measured."""
    if plan.backend != "llamacpp":
        return False
    info = describe_model(plan.path)
    if info.pooling:
        return False
    hw = hardware or machine.hardware.detect()
    one = check_fit(hw, info, n_ctx=plan.options.n_ctx, kv_type=plan.options.kv_cache_type)
    many = check_fit(hw, info, n_ctx=plan.options.n_ctx, slots=DEFAULT_SLOTS, kv_type=plan.options.kv_cache_type)
    return many.verdict != "no" and (many.verdict, many.n_gpu_layers) == (one.verdict, one.n_gpu_layers)


def _slot_worker(model, backend: str, options: LoadOptions, engine_options, state_cache):
    """Several conversations at once (engine/slots.py), on llama.cpp or MLX."""
    def make():
        plan = plan_load(model, backend=backend, options=options)
        log.info("%s: %s; %d slots", plan.label, plan.reason, options.slots)
        return open_runtime(plan), {"backend": plan.label, "backend_reason": plan.reason}

    return SlotWorker(make, options=engine_options, state_cache=state_cache)


def _remote_worker(model, url: str | None, key: str | None, backend: str) -> Worker:
    if backend != "remote":
        raise ModelLoadError("--remote-url goes with --backend remote.")
    if not url:
        raise ModelLoadError("--backend remote needs --remote-url (such as http://gpu-box:8000/v1).")

    return EngineWorker(lambda: RemoteEngine(url, api_key=key, model=str(model) if model else None))
