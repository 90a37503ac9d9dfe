"""Putting a model, a runtime and the engine together."""
from __future__ import annotations

from pathlib import Path

from backends.engine import Engine, EngineOptions
from backends.runtime import LoadOptions, ModelLoadError
from backends.state_cache import StateCache
from backends.worker import EngineWorker
from models.registry import resolve_model

BACKENDS = ("auto", "llamacpp", "mlx")


def open_runtime(model: str | Path | None, *, backend: str = "auto", options: LoadOptions = LoadOptions()):
    """Load `model` (a registry name or a path; the starter model when None) on a runtime."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "mlx":
        raise ModelLoadError("The MLX backend is not available in this version of Lantern yet; use --backend llamacpp.")
    from backends.llamacpp import LlamaCppRuntime  # heavy: imported only when a model loads

    return LlamaCppRuntime(resolve_model(model), options)


def start_worker(model: str | Path | None, *, backend: str = "auto", options: LoadOptions = LoadOptions(),
                 engine_options: EngineOptions | None = None, state_cache: StateCache | None = None) -> EngineWorker:
    """Start the engine thread; the model loads on it (wait_ready() reports a failure)."""
    if engine_options is not None:
        engine_options.validate()  # before any model loads

    def make() -> Engine:
        return Engine(open_runtime(model, backend=backend, options=options), state_cache=state_cache,
                      options=engine_options)

    return EngineWorker(make)
