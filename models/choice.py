"""Which backend runs a model on a machine, with how many GPU layers, and why.

A pure function of a hardware description and a model description, so every kind of machine
can be tested from descriptions alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from basics.errors import ModelLoadError
from machine.hardware import Hardware
from models.info import ModelInfo

GiB = 1 << 30
# Room llama.cpp needs beside weights and KV cache (compute buffers, CUDA context), and a share of it.
GPU_MARGIN_BYTES = 600 << 20
GPU_MARGIN_SHARE = 0.05
# macOS lets the GPU wire about this much of unified memory by default.
METAL_WORKING_SET = 0.75
CUDA_REBUILD = ('run scripts/setup again (it builds for CUDA where the NVIDIA driver answers), or: CMAKE_ARGS="-DGGML_CUDA=on" '
                'pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python=={version}"')


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "llamacpp" or "mlx"
    n_gpu_layers: int  # -1: all
    reason: str
    advice: str = ""  # something the user can do for more speed (shown, never required)

    @property
    def device(self) -> str:
        if self.backend == "mlx":
            return "MLX"
        return "CPU" if self.n_gpu_layers == 0 else "GPU" if self.n_gpu_layers == -1 else "GPU+CPU"


def choose_backend(hw: Hardware, model: ModelInfo, *, n_ctx: int, backend: str = "auto",
                   n_gpu_layers: int | None = None, slots: int = 1, kv_type: str = "f16") -> BackendChoice:
    """Pick a backend for `model` on `hw`; `backend` and `n_gpu_layers` override the choice. `slots`: conversations
    run at once, each with its own sliding windows and recurrent states beside the shared cells (models/info.py)."""
    if backend not in ("auto", "llamacpp", "mlx"):
        raise ModelLoadError(f"Unknown backend {backend!r}; choose auto, llamacpp or mlx.")
    n_ctx = n_ctx or min(model.n_ctx_train or 4096, 8192)
    if model.format == "mlx" or backend == "mlx":
        return _mlx(hw, model, backend, n_gpu_layers)
    if hw.llamacpp_version is None:
        raise ModelLoadError("llama-cpp-python is not installed, and GGUF models run on it: pip install llama-cpp-python")
    if n_gpu_layers is not None:
        where = "all layers" if n_gpu_layers == -1 else f"{n_gpu_layers} layers"
        if n_gpu_layers and not hw.llamacpp_gpu_offload:
            raise ModelLoadError(f"GPU layers were asked for, but this llama-cpp-python build cannot use a GPU. "
                                 f"{_rebuild_hint(hw)}")
        return BackendChoice("llamacpp", n_gpu_layers, f"llama.cpp with {where} on the GPU (you set it)"
                             if n_gpu_layers else "llama.cpp on the CPU (you set --n-gpu-layers 0)")
    if hw.apple_silicon:
        return _metal(hw, model, n_ctx, slots, kv_type)
    if hw.nvidia:
        return _nvidia(hw, model, n_ctx, slots, kv_type)
    return BackendChoice("llamacpp", 0, f"no usable GPU: llama.cpp on the CPU ({hw.cpu_cores} cores)")


def _mlx(hw: Hardware, model: ModelInfo, backend: str, n_gpu_layers: int | None) -> BackendChoice:
    if backend == "llamacpp":
        raise ModelLoadError(f"{model.path.name} is an MLX model; it runs on the MLX backend, not llama.cpp.")
    if hw.mlx_version is None:
        hint = "pip install mlx mlx-lm" if hw.apple_silicon else 'pip install "mlx[cpu]" mlx-lm'
        raise ModelLoadError(f"The MLX backend is not installed here ({hint}).")
    if n_gpu_layers not in (None, 0, -1):
        raise ModelLoadError("The MLX backend keeps the whole model on one device; --n-gpu-layers is for llama.cpp.")
    device = "Metal on Apple silicon" if hw.apple_silicon else "the CPU (no Metal here)"
    why = "an MLX model" if model.format == "mlx" else "you chose MLX"
    return BackendChoice("mlx", -1 if hw.apple_silicon else 0, f"{why}: MLX on {device}")


def _metal(hw: Hardware, model: ModelInfo, n_ctx: int, slots: int, kv_type: str) -> BackendChoice:
    need = model.size_bytes + model.kv_bytes(n_ctx, slots=slots, kv_type=kv_type)
    if not hw.llamacpp_gpu_offload:
        return BackendChoice("llamacpp", 0, "Apple silicon, but this llama-cpp-python was built without Metal: "
                             "llama.cpp on the CPU", advice=_rebuild_hint(hw))
    reason = "Apple silicon: GGUF runs on llama.cpp with Metal, every layer on the GPU (unified memory)"
    if need > hw.ram_total_bytes * METAL_WORKING_SET:
        reason += f"; it needs {need / GiB:.1f} GiB, more than macOS lets the GPU use by default, so expect swapping"
    return BackendChoice("llamacpp", -1, reason, advice="MLX-format models of this one run on MLX, often faster")


def _nvidia(hw: Hardware, model: ModelInfo, n_ctx: int, slots: int, kv_type: str) -> BackendChoice:
    gpu = max(hw.nvidia, key=lambda g: g.free_bytes)
    if not hw.llamacpp_gpu_offload or hw.llamacpp_gpu_backend not in ("CUDA", "Vulkan"):
        return BackendChoice("llamacpp", 0, f"{gpu.name} found, but this llama-cpp-python was built without CUDA: "
                             "llama.cpp on the CPU", advice=_rebuild_hint(hw))
    kv = model.kv_bytes(n_ctx, slots=slots, kv_type=kv_type)
    need = model.size_bytes + kv
    room = gpu.free_bytes - GPU_MARGIN_BYTES - int(gpu.free_bytes * GPU_MARGIN_SHARE)
    free = f"{gpu.free_bytes / GiB:.1f} GiB free on {gpu.name}"
    cache = f"KV cache for {slots} slots" if slots > 1 else "KV cache"
    if need <= room:
        return BackendChoice("llamacpp", -1, f"every layer on the GPU: weights and {cache} need {need / GiB:.1f} GiB, "
                             f"{free}")
    layers = model.n_layers
    per_layer = (model.size_bytes - model.output_bytes + kv) / max(layers, 1)
    fit = int((room - model.output_bytes) // per_layer) if per_layer > 0 else 0
    fit = max(0, min(fit, layers - 1))
    if fit == 0:
        return BackendChoice("llamacpp", 0, f"not even one layer fits the GPU ({free}): llama.cpp on the CPU")
    return BackendChoice("llamacpp", fit, f"{fit} of {layers} layers on the GPU, the rest on the CPU: the model needs "
                         f"{need / GiB:.1f} GiB, {free}", advice="a smaller quant or context puts it all on the GPU")


def _rebuild_hint(hw: Hardware) -> str:
    if hw.apple_silicon:
        return ('Rebuild llama-cpp-python with Metal: CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall '
                f'--no-cache-dir "llama-cpp-python=={hw.llamacpp_version}"')
    if hw.nvidia:
        return "Rebuild llama-cpp-python with CUDA: " + CUDA_REBUILD.format(version=hw.llamacpp_version)
    return ""
