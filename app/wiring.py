"""Putting a model, a runtime and the engine together."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import machine.hardware
from basics.errors import ModelLoadError
from engine.auto_worker import AutoWorker
from engine.engine import Engine, EngineOptions
from engine.remote import RemoteEngine
from engine.slots import SlotWorker
from engine.state_cache import StateCache
from engine.worker import EngineWorker, Worker, wait_for_retired
from models.choice import choose_backend
from models.convert import mlx_copy_of
from models.fit import check_fit
from models.info import describe_model
from models.library import resolve_model
from models.projectors import find_projector, is_projector
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.mlx_runtime import MlxRuntime
from runtimes.runtime import LoadOptions

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

    @property
    def label(self) -> str:
        if self.backend == "mlx":
            return "mlx"
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
    info = describe_model(path)
    if hardware is None:
        if not wait_for_retired():  # a model being switched away from still holds memory: measured with it
            log.warning("The previous model is still unloading; %s is fitted to the memory free now", path.name)
        hardware = machine.hardware.detect()
    choice = choose_backend(hardware, info, n_ctx=options.n_ctx, backend=backend,
                            n_gpu_layers=options.n_gpu_layers, slots=max(options.slots, 1),
                            kv_type=options.kv_cache_type)
    reason = choice.reason
    if choice.backend == "mlx" and info.format == "gguf":
        path = mlx_copy_of(path)
        reason += f" (the GGUF file converted once to {path})"
    if choice.backend == "mlx":
        return LoadPlan(path, "mlx", options, reason, choice.advice)
    options = replace(options, n_gpu_layers=choice.n_gpu_layers)
    if options.projector is None:
        found = find_projector(path)
        options = replace(options, projector=str(found) if found else "")
        if found:
            reason += f"; sees images through {found.name}"
    return LoadPlan(path, "llamacpp", options, reason, choice.advice)


def open_runtime(plan: LoadPlan):
    """Load a planned model (heavy runtimes are imported only now)."""
    if plan.backend == "mlx":
        return MlxRuntime(plan.path, plan.options)

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
    if options.slots > 1:
        return _slot_worker(model, backend, options, engine_options, state_cache)

    def make() -> Engine:  # on the engine thread: reading the model's metadata is file work too
        plan = plan_load(model, backend=backend, options=options)
        log.info("%s: %s", plan.label, plan.reason)
        return Engine(open_runtime(plan), state_cache=state_cache, options=engine_options, backend=plan.label,
                      backend_reason=plan.reason)

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
    """The slots Lantern runs a planned model with when it chooses (AUTO): DEFAULT_SLOTS where it can batch, else 1."""
    return DEFAULT_SLOTS if _can_batch(plan, hardware) else 1


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
