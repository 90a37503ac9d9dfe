"""How many tokens to draft: the length that gives the most tokens per second on this device.

Tokens per verification step follow from the acceptance rate `a` (geometric: (1 - a^(k+1)) / (1 - a)
for a draft of k), and its cost from a forward pass of k + 1 tokens, measured when the model loads.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

MEASURED_SIZES = (1, 2, 4, 8, 16)
_measured: dict[tuple, dict[int, float]] = {}


def measure_forward_costs(runtime, *, sizes=MEASURED_SIZES, key: tuple | None = None) -> dict[int, float]:
    """Seconds for one forward pass of n tokens with logits for every row, on an empty cache."""
    key = key or (str(runtime.model_path), runtime.n_ctx, runtime.n_batch, getattr(runtime, "n_threads", None))
    if key in _measured:
        return _measured[key]
    costs = {}
    sizes = [s for s in sizes if s < runtime.n_ctx]
    tokens = [int(t) for t in np.linspace(100, min(runtime.n_vocab, 30000) - 1, max(sizes)).astype(int)]
    runtime.forward(tokens[:1], 0)  # warm-up: first passes allocate
    runtime.truncate(0)
    for n in sizes:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            runtime.forward(tokens[:n], 0, rows=range(n))
            best = min(best, time.perf_counter() - t0)
            runtime.truncate(0)
        costs[n] = best
    _measured[key] = costs
    return costs


class DraftLengthPolicy:
    """Chooses a draft length per step; 0 means plain decoding, with a short probe now and then."""

    def __init__(self, costs: dict[int, float], *, draft_max: int = 16, probe_every: int = 48,
                 decay: float = 0.9):
        self.cost = _interpolate(costs)
        self.draft_max = draft_max
        self.probe_every = probe_every
        self.decay = decay
        self._acc: dict[int, list[float]] = {}  # matched n-gram length -> [accepted, rejected] (decayed)
        self._since_probe = 0

    def acceptance(self, n_match: int) -> float:
        acc, rej = self._acc.get(n_match, (1.0, 1.0))  # prior: one of each
        return acc / (acc + rej)

    def choose(self, n_match: int, limit: int) -> int:
        limit = min(limit, self.draft_max)
        if limit <= 0 or n_match == 0:
            return 0
        a = min(self.acceptance(n_match), 0.999)
        best_k, best_rate = 0, 1.0 / self.cost(1)
        for k in range(1, limit + 1):
            rate = (1 - a ** (k + 1)) / (1 - a) / self.cost(k + 1)
            if rate > best_rate:
                best_k, best_rate = k, rate
        if best_k == 0:
            self._since_probe += 1
            if self._since_probe >= self.probe_every:  # the text may have turned to copying: look again
                self._since_probe = 0
                return 1
        return best_k

    def update(self, n_match: int, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        acc, rej = self._acc.get(n_match, (1.0, 1.0))
        self._acc[n_match] = [acc * self.decay + accepted, rej * self.decay + (1 if accepted < drafted else 0)]


def _interpolate(costs: dict[int, float]) -> Callable[[int], float]:
    xs = sorted(costs)
    ys = [costs[x] for x in xs]
    if len(xs) == 1:
        return lambda n: ys[0] * n
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])

    def cost(n: int) -> float:
        if n >= xs[-1]:
            return ys[-1] + slope * (n - xs[-1])
        return float(np.interp(n, xs, ys))

    return cost
