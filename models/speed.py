"""How fast a model would write on this machine: an estimate from memory bandwidth, before any download.

Writing a token reads every active weight once (and the KV cache so far), so tokens per second is about the memory
bandwidth over those bytes, times how much of the bandwidth llama.cpp and MLX reach in practice. Shown marked as an
estimate; `lantern bench` measures the real figure once a model is here.
"""
from __future__ import annotations

import re

from machine.hardware import Hardware

# Memory bandwidth in GB/s by GPU name (the vendors' figures); the first pattern that matches wins.
GPU_BANDWIDTH = [
    (r"H200", 4800), (r"H100", 3350), (r"A100", 2039), (r"B200", 8000), (r"L40", 864), (r"A10\b", 600),
    (r"L4\b", 300), (r"T4\b", 320), (r"5090", 1792), (r"5080", 960), (r"5070 Ti", 896), (r"5070", 672),
    (r"5060 Ti", 448), (r"5060", 448), (r"4090", 1008), (r"4080", 717), (r"4070 Ti", 504), (r"4070", 504),
    (r"4060 Ti", 288), (r"4060", 272), (r"3090", 936), (r"3080", 760), (r"3070", 448), (r"3060", 360),
    (r"2080", 448), (r"2070", 448), (r"2060", 336),
]
# Apple silicon's unified memory, by chip; the plain chips of each generation last.
APPLE_BANDWIDTH = [
    (r"M\d Ultra", 800), (r"M4 Max", 546), (r"M[123] Max", 400), (r"M4 Pro", 273), (r"M3 Pro", 150),
    (r"M[12] Pro", 200), (r"M4", 120), (r"M3", 100), (r"M2", 100), (r"M1", 68),
]
UNKNOWN_GPU_GBPS, APPLE_DEFAULT_GBPS = 400, 100
CPU_GBPS = 60  # two channels of DDR5 (DDR4: about 50); laptops and desktops alike
# Share of the bandwidth decoding reaches: llama.cpp on a GPU 60-75%; on the CPU, measured on a 2-core machine
# (SmolLM2 135M about 140 tok/s and Gemma 3 270M about 55 tok/s: both about 14 GB/s read a second).
EFFICIENCY = {"gpu": 0.65, "apple": 0.65, "cpu": 0.7}
GBPS_PER_CORE = 10


def memory_bandwidth(hw: Hardware, where: str) -> tuple[float, str]:
    """(GB/s, how it was found) for the memory a model runs from: "gpu", "apple" or "cpu"."""
    if where == "gpu" and hw.nvidia:
        name = max(hw.nvidia, key=lambda g: g.free_bytes).name
        for pattern, gbps in GPU_BANDWIDTH:
            if re.search(pattern, name):
                return gbps, name
        return UNKNOWN_GPU_GBPS, f"{name} (not in Lantern's table)"
    if where == "apple":
        for pattern, gbps in APPLE_BANDWIDTH:
            if re.search(pattern, hw.cpu_name):
                return gbps, hw.cpu_name
        return APPLE_DEFAULT_GBPS, hw.cpu_name or "Apple silicon"
    # A few cores cannot use all of a desktop's bandwidth: about 10 GB/s a core, up to the memory's own limit.
    return min(CPU_GBPS, GBPS_PER_CORE * max(hw.cpu_cores, 1)), f"{hw.cpu_cores} CPU cores"


def estimate_tokens_per_s(hw: Hardware, *, size_bytes: int, params_b: float, active_b: float, verdict: str,
                          n_gpu_layers: int = 0, n_layers: int = 1) -> float:
    """Tokens a second while writing, for a model of `size_bytes` whose `active_b` of `params_b` billion
    parameters each token uses, run as the fit check placed it (`verdict`). 0 when it does not run here."""
    if verdict in ("no", "helpers") or size_bytes <= 0:  # over helpers the network sets the pace: not estimated
        return 0.0
    read = size_bytes * min(1.0, active_b / params_b) if params_b > 0 else size_bytes  # bytes read per token
    if hw.apple_silicon:
        gbps, _ = memory_bandwidth(hw, "apple")
        return gbps * 1e9 * EFFICIENCY["apple"] / read
    cpu = memory_bandwidth(hw, "cpu")[0] * 1e9 * EFFICIENCY["cpu"]
    if verdict == "cpu":
        return cpu / read
    gpu = memory_bandwidth(hw, "gpu")[0] * 1e9 * EFFICIENCY["gpu"]
    if verdict == "gpu":
        return gpu / read
    on_gpu = n_gpu_layers / max(n_layers, 1)  # partial: the layers on each side take their own time
    return 1 / (read * on_gpu / gpu + read * (1 - on_gpu) / cpu)
