"""Will a model fit this machine: on the GPU, partly, on the CPU only, or not at all."""
from __future__ import annotations

from dataclasses import dataclass, replace

from basics.errors import ModelLoadError
from machine.hardware import Hardware
from models.choice import GPU_MARGIN_BYTES, GPU_MARGIN_SHARE, METAL_WORKING_SET, choose_backend
from models.info import ModelInfo
from models.speed import estimate_tokens_per_s
from models.spread import spread

GiB = 1 << 30
RAM_MARGIN_BYTES = 1 << 30  # the OS, Lantern itself and the window keep this much


@dataclass(frozen=True)
class Fit:
    verdict: str  # "gpu", "partial", "cpu", "no"; "helpers": spread over this machine and its helpers
    n_gpu_layers: int
    need_bytes: int
    summary: str
    machines: int = 1

    @property
    def badge(self) -> str:
        if self.verdict == "helpers":
            return f"fits with {self.machines} machines"
        return {"gpu": "fits on the GPU", "partial": f"{self.n_gpu_layers} layers on the GPU",
                "cpu": "CPU only", "no": "too big"}[self.verdict]


def check_fit(hw: Hardware, model: ModelInfo, *, n_ctx: int, slots: int = 1, kv_type: str = "f16") -> Fit:
    """Weights plus KV cache at `n_ctx` (for `slots` conversations at once) plus a margin, against free GPU memory,
    unified memory and RAM; a GGUF model too big for those may fit with the helper machines that answered."""
    fit = _fit_here(hw, model, n_ctx=n_ctx, slots=slots, kv_type=kv_type)
    if fit.verdict != "no" or not hw.helpers or model.format != "gguf":
        return fit
    try:
        sp = spread(hw, model, list(hw.helpers), n_ctx=n_ctx, slots=slots, kv_type=kv_type,
                    local_gpu=hw.llamacpp_gpu_offload)
    except ModelLoadError:
        return fit
    return Fit("helpers", sp.n_gpu_layers, fit.need_bytes, f"needs {fit.need_bytes / GiB:.1f} GiB: {sp.reason}",
               machines=sp.machines)


def _fit_here(hw: Hardware, model: ModelInfo, *, n_ctx: int, slots: int = 1, kv_type: str = "f16") -> Fit:
    n_ctx = min(n_ctx, model.n_ctx_train) if model.n_ctx_train else n_ctx
    need = model.size_bytes + model.kv_bytes(n_ctx, slots=slots, kv_type=kv_type)
    gib = f"{need / GiB:.1f} GiB"
    ram = hw.ram_available_bytes - RAM_MARGIN_BYTES
    if hw.apple_silicon:  # one memory for both
        room = min(hw.ram_total_bytes * METAL_WORKING_SET, hw.ram_available_bytes)
        if need <= room:
            return Fit("gpu", -1, need, f"needs {gib} of {hw.ram_total_bytes / GiB:.0f} GiB unified memory")
        return Fit("no", 0, need, f"needs {gib}; macOS lets the GPU use about {room / GiB:.1f} GiB here")
    if model.format == "mlx":
        verdict = "cpu" if need <= ram else "no"
        return Fit(verdict, 0, need, f"needs {gib}; MLX runs on the CPU here ({ram / GiB:.1f} GiB free)")
    if hw.llamacpp_version is not None and hw.nvidia and hw.llamacpp_gpu_offload:
        layers = choose_backend(hw, model, n_ctx=n_ctx, slots=slots, kv_type=kv_type).n_gpu_layers
        if layers == -1:
            return Fit("gpu", -1, need, f"needs {gib}, every layer on the GPU")
        if layers > 0:
            on_cpu = need * (1 - layers / max(model.n_layers, 1))
            if on_cpu <= ram:
                return Fit("partial", layers, need, f"needs {gib}: {layers} of {model.n_layers} layers on the GPU")
    if need <= ram:
        return Fit("cpu", 0, need, f"needs {gib} of the {ram / GiB:.1f} GiB of RAM free")
    return Fit("no", 0, need, f"needs {gib}; only {ram / GiB:.1f} GiB of RAM is free")


def layers_fit(hw: Hardware, model: ModelInfo, layers: int, *, n_ctx: int, kv_type: str = "f16") -> str:
    """What `layers` of the model's layers on the GPU (-1: all) take there and in RAM, in words (the window's GPU
    layers slider says it as it moves)."""
    total = max(model.n_layers, 1)
    layers = total if layers < 0 else min(layers, total)
    n_ctx = min(n_ctx, model.n_ctx_train) if model.n_ctx_train and n_ctx else n_ctx or 4096
    need = model.size_bytes + model.kv_bytes(n_ctx, kv_type=kv_type)
    on_gpu = need * layers / total
    in_ram = f"{(need - on_gpu) / GiB:.1f} GiB in RAM" if layers < total else "nothing in RAM"
    if hw.apple_silicon or not hw.nvidia:  # one memory for both: where a layer runs costs the same
        return f"{layers} of {total} layers on the GPU ({need / GiB:.1f} GiB in all)"
    gpu = max(hw.nvidia, key=lambda g: g.free_bytes)
    room = gpu.free_bytes - GPU_MARGIN_BYTES - int(gpu.free_bytes * GPU_MARGIN_SHARE)
    said = (f"{layers} of {total} layers on the GPU: {on_gpu / GiB:.1f} GiB of the {gpu.free_bytes / GiB:.1f} GiB "
            f"free on {gpu.name}, {in_ram}")
    return said + (" — more than fits: the load will fail or be slow" if on_gpu > room else "")


def fit_and_speed(hw: Hardware, model: ModelInfo, *, n_ctx: int) -> str:
    """"fits on the GPU · ~85 tokens/s": a local model's fit and its estimated writing speed, for the model picker
    (its file size stands for the bytes read per token: a local file does not say its active parameters)."""
    fit = check_fit(hw, model, n_ctx=n_ctx)
    speed = estimate_tokens_per_s(hw, size_bytes=model.size_bytes, params_b=0, active_b=0, verdict=fit.verdict,
                                  n_gpu_layers=fit.n_gpu_layers, n_layers=model.n_layers)
    return f"{fit.badge} · ~{speed:.0f} tokens/s" if speed >= 1 else fit.badge


def with_draft(model: ModelInfo, draft: ModelInfo, *, n_ctx: int, kv_type: str = "f16") -> ModelInfo:
    """`model` as it is fitted with a draft model beside it: the draft's weights and its cache count as the target's
    (it runs where the target runs, its cache as long as the target's)."""
    n_ctx = n_ctx or min(model.n_ctx_train or 4096, 8192)  # 0: the model's own context, as the load takes it
    extra = draft.size_bytes + draft.kv_bytes(n_ctx, kv_type=kv_type)
    return replace(model, size_bytes=model.size_bytes + extra)
