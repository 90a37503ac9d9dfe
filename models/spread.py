"""Where each share of a model runs when it is spread over this machine and helper machines (llama.cpp's RPC
backend): layers by free memory, as llama.cpp places them. A pure function of descriptions, like models/choice.py.

llama.cpp places the first `cpu` layers on this machine's CPU, then the rest (and the output layer, the last unit)
on the model's devices in order, by `tensor_split`: the helpers' devices first, then this machine's GPU
(runtimes/llamacpp.py builds that list). Counts given as the split are kept exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from basics.errors import ModelLoadError
from machine.hardware import Hardware
from machine.helpers import Helper
from models.choice import GPU_MARGIN_BYTES, GPU_MARGIN_SHARE, METAL_WORKING_SET
from models.info import ModelInfo

GiB = 1 << 30
RAM_MARGIN_BYTES = 1 << 30  # as models/fit.py keeps on this machine
HELPER_MARGIN_BYTES = 512 << 20  # a helper's compute buffers and its own system
HELPER_MARGIN_SHARE = 0.05


@dataclass(frozen=True)
class Spread:
    """Layer counts in llama.cpp's order: `cpu` here first, then one count per helper device, then this machine's
    GPU. The counts add up to the model's layers plus one (the output layer)."""

    cpu: int
    helper_devices: tuple[tuple[str, int, int], ...]  # (endpoint, device index, layers)
    gpu: int
    reason: str

    @property
    def n_gpu_layers(self) -> int:
        """llama.cpp's n_gpu_layers: every unit not on the CPU."""
        return sum(n for _, _, n in self.helper_devices) + self.gpu

    @property
    def helper_layers(self) -> tuple[int, ...]:
        return tuple(n for _, _, n in self.helper_devices)

    @property
    def machines(self) -> int:
        """This machine (it always holds the input layer and samples) and each helper with a share."""
        return len({e for e, _, n in self.helper_devices if n}) + 1


def spread(hw: Hardware, model: ModelInfo, helpers: list[Helper], *, n_ctx: int, slots: int = 1,
           kv_type: str = "f16", local_gpu: bool = False) -> Spread:
    """Plan `model` over this machine and `helpers` by free memory: this machine's GPU first where it has one
    (`local_gpu`: the build offloads to it), then the helpers and this machine's RAM in proportion to what each has
    free. ModelLoadError when all of them together are too small."""
    n_ctx = n_ctx or min(model.n_ctx_train or 4096, 8192)
    units = max(model.n_layers, 1) + 1
    need = model.size_bytes + model.kv_bytes(n_ctx, slots=slots, kv_type=kv_type)
    per_unit = need / units
    ram = max(0, hw.ram_available_bytes - RAM_MARGIN_BYTES)
    gpu_room = _local_gpu_room(hw) if local_gpu else 0
    rooms = [max(0, d.free_bytes - HELPER_MARGIN_BYTES - int(d.free_bytes * HELPER_MARGIN_SHARE))
             for h in helpers for d in h.devices]
    total = ram + gpu_room + sum(rooms)
    if need > total:
        raise ModelLoadError(f"{model.path.name} needs {need / GiB:.1f} GiB, and this machine with "
                             f"{_count(len(helpers), 'helper')} has {total / GiB:.1f} GiB free for it: add a helper, "
                             "or choose a smaller quant or context.")
    gpu = min(units, int(gpu_room // per_unit)) if per_unit else units
    rest = units - gpu
    # the helpers' devices and this machine's RAM share the rest by free memory, none beyond its room
    caps = [int(r // per_unit) for r in rooms] + [int(ram // per_unit)]
    shares = _by_weight(rest, [float(r) for r in rooms] + [float(ram)], caps)
    cpu = shares.pop()
    devices = tuple((h.endpoint, d.index, n) for h, d, n in zip(_owners(helpers), _devices(helpers), shares))
    plan = Spread(cpu, devices, gpu, "")
    return Spread(cpu, devices, gpu, _say(plan, model))


def _local_gpu_room(hw: Hardware) -> int:
    if hw.apple_silicon:
        return int(min(hw.ram_total_bytes * METAL_WORKING_SET, hw.ram_available_bytes))
    gpus = hw.nvidia
    if not gpus:
        return 0
    return sum(max(0, g.free_bytes - GPU_MARGIN_BYTES - int(g.free_bytes * GPU_MARGIN_SHARE)) for g in gpus)


def _by_weight(n: int, weights: list[float], caps: list[int]) -> list[int]:
    """`n` units shared in proportion to `weights`, none above its cap (largest remainders get the odd units)."""
    counts = [0] * len(weights)
    open_ = [i for i, w in enumerate(weights) if w > 0 and caps[i] > 0]
    left = n
    while left > 0 and open_:
        total = sum(weights[i] for i in open_)
        exact = {i: left * weights[i] / total for i in open_}
        step = {i: min(int(exact[i]), caps[i] - counts[i]) for i in open_}
        by_rest = sorted(open_, key=lambda i: exact[i] - int(exact[i]), reverse=True)
        spare = left - sum(step.values())
        for i in by_rest:
            if spare <= 0:
                break
            if step[i] < caps[i] - counts[i] and step[i] == int(exact[i]):
                step[i] += 1
                spare -= 1
        for i in open_:
            counts[i] += step[i]
        given = sum(step.values())
        left -= given
        open_ = [i for i in open_ if counts[i] < caps[i]]
        if given == 0:
            break
    if left > 0:  # the rooms were checked in bytes; rounding to whole layers can leave one: the roomiest takes it
        counts[max(range(len(weights)), key=lambda i: weights[i])] += left
    return counts


def _owners(helpers: list[Helper]):
    return [h for h in helpers for _ in h.devices]


def _devices(helpers: list[Helper]):
    return [d for h in helpers for d in h.devices]


def _say(plan: Spread, model: ModelInfo) -> str:
    """"spread over 3 machines: layers 0-9 here (CPU), 10-19 on 192.168.1.20:50052, 20-29 and the output on …"."""
    layers = max(model.n_layers, 1)
    parts, at = [], 0

    def span(n: int) -> str:
        lo, hi = at, at + n - 1
        last = min(hi, layers - 1)
        text = (f"layer {lo}" if lo == last else f"layers {lo}-{last}") if lo < layers else ""
        if hi >= layers:
            text = f"{text} and the output" if text else "the output"
        return text

    if plan.cpu:
        parts.append(f"{span(plan.cpu)} here (CPU)")
        at += plan.cpu
    for endpoint, index, n in plan.helper_devices:
        if n:
            parts.append(f"{span(n)} on {endpoint}" + (f" (device {index})" if index else ""))
            at += n
    if plan.gpu:
        parts.append(f"{span(plan.gpu)} here (GPU)")
    return f"spread over {plan.machines} machines: " + ", ".join(parts)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("s" if n != 1 else "")
