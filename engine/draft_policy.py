"""How many tokens to draft: the length that gives the most tokens per second on this device.

A step's cost is a forward pass of k + 1 tokens: measured when the model loads, then corrected by every
pass actually run (a running ratio per pass size), so a busy moment at load, a deeper context or a change
of load later is learnt within a few dozen steps, with no extra passes. Its expected tokens
come from two running rates per matched n-gram length: a0, that the first drafted token is right,
and a1, that the next one is right when the one before was (copied text runs on in bursts, so a1 is
usually far above a0): E(k) = 1 + a0 * (1 - a1^k) / (1 - a1).

The rates carry from one reply to the next (an editing session quotes again and again), but a new reply starts
halfway back to the prior, with no more weight than the prior: a reply that looped on its own phrases taught 4-grams
rates of 0.9, and the next, open-ended one paid for drafts of 3-5 tokens, one in three right, until it was unlearnt.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

MEASURED_SIZES = (1, 2, 4, 8, 16)
PROBE_DRAFT = 4  # a probe's draft length while costs are being learnt
FIRST_PROBE_AFTER = 8  # steps without drafting before the first probe (then every `probe_every`)
_measured: dict[tuple, dict[int, float]] = {}


def measure_forward_costs(runtime, *, sizes=MEASURED_SIZES, key: tuple | None = None) -> dict[int, float]:
    """Seconds for one forward pass of n tokens with logits for every row, on an empty cache."""
    key = key or (str(runtime.model_path), runtime.n_ctx, runtime.n_batch, getattr(runtime, "n_threads", None))
    if key in _measured:
        return _measured[key]
    costs = {}
    sizes = [s for s in sizes if s < runtime.n_ctx]
    tokens = [int(t) for t in np.linspace(100, min(runtime.n_vocab, 30000) - 1, max(sizes)).astype(int)]
    t0 = time.perf_counter()
    runtime.forward(tokens[:1], 0)  # warm-up: first passes allocate
    runtime.truncate(0)
    repeats = 3
    if time.perf_counter() - t0 > 0.1:  # a slow device (MLX on a CPU): a rough curve, not seconds of load time
        repeats, sizes = 1, [s for s in sizes if s <= 4]
    for n in sizes:
        best = float("inf")
        for _ in range(repeats):
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
                 decay: float = 0.9, margin: float = 1.05, learn_costs: bool = True):
        """`learn_costs=False` keeps `costs` as given (tests, and seeded requests, whose draft lengths must
        depend on the text alone). `margin`: the gain in tokens per second a draft must promise; the estimates
        are noisy, and a draft that promises 2% loses that much as often as it wins it."""
        interpolate = _interpolate(costs)
        self._base = [0.0] + [interpolate(n) for n in range(1, draft_max + 2)]
        self._costs = list(self._base)  # looked up every step
        self._ratio: dict[int, float] = {}  # pass size -> running (observed / base) cost
        self.learn_costs = learn_costs
        self.draft_max = draft_max
        self.probe_every = probe_every
        self.decay = decay
        self.margin = margin
        self._acc: dict[int, list[float]] = {}  # matched n-gram length -> [accepted, rejected] (decayed)
        self._since_probe = max(0, probe_every - FIRST_PROBE_AFTER)  # the first probe comes early
        self._since_explore = 0
        self.explore_every = 8

    def forget(self) -> None:
        """Drop what was learnt about acceptance (the measured costs stay)."""
        self._acc.clear()
        self._since_probe = max(0, self.probe_every - FIRST_PROBE_AFTER)

    def new_reply(self) -> None:
        """A reply begins: what earlier replies taught is drawn halfway back to the prior and weighs what the prior
        does, so a few of this reply's own drafts (or shadow drafts) outweigh it."""
        for n_match, counts in self._acc.items():
            prior = _prior(n_match)
            for first in (0, 2):  # [accepted, rejected] of the first token, then of the ones after it
                seen, weight = counts[first] + counts[first + 1], prior[first] + prior[first + 1]
                if seen > weight:
                    for i in (first, first + 1):
                        counts[i] = (counts[i] * weight / seen + prior[i]) / 2

    def rates(self, n_match: int) -> tuple[float, float]:
        fa, fr, ca, cr = self._acc.get(n_match) or _prior(n_match)
        return fa / (fa + fr), ca / (ca + cr)

    def expected_tokens(self, n_match: int, k: int) -> float:
        a0, a1 = self.rates(n_match)
        a1 = min(a1, 0.999)
        return 1 + a0 * (1 - a1 ** k) / (1 - a1)

    def choose(self, n_match: int, limit: int, *, others: int = 0) -> int:
        """`others`: rows other conversations put in the same pass (engine/slots.py). A draft row then costs what
        another conversation's token would, so drafts must raise the tokens the whole pass gives per second:
        (others + E(k)) / cost(others + 1 + k) against (others + 1) / cost(others + 1). With no others that is this
        conversation's own speed."""
        limit = min(limit, self.draft_max)
        if limit <= 0 or n_match == 0:
            return 0
        if not self.learn_costs:
            others = 0  # a seeded reply's draft lengths follow from its own text alone, never from other requests
        best_k, _ = self.best(n_match, limit, others=others)
        if best_k == 0 and others:
            return 0  # no probes beside other conversations: a probe's rows would slow them all
        if best_k == 0:
            if self.learn_costs and len(self._ratio) >= 2:
                # A pass of several tokens was seen, so the costs are known; whether the text turned to copying is
                # learnt from the plain steps' shadow drafts (engine/decoding.py), free. A probe here cost open
                # chat 3-4% on a CPU where a pass of 5 tokens costs 3 of 1 (benchmarks/bench_slots_lookup.py).
                return 0
            self._since_probe += 1
            if self._since_probe >= self.probe_every:  # the text may have turned to copying: look again
                self._since_probe = 0
                # Learning costs, the probe also looks at a pass of several tokens: on a CPU a pass of 2 can cost
                # twice a pass of 1 while one of 5 costs little more than one of 2.
                return min(limit, PROBE_DRAFT) if self.learn_costs else 1
            return 0
        if self.learn_costs and self._ratio and best_k + 1 >= max(self._ratio) and best_k < limit:
            self._since_explore += 1
            if self._since_explore >= self.explore_every:  # the best is the longest pass seen: try a longer one
                self._since_explore = 0
                return min(limit, 2 * best_k)
        return best_k

    def best(self, n_match: int, limit: int, *, others: int = 0, per_token: float = 0.0) -> tuple[int, float]:
        """The draft length that promises the most tokens per second, and that rate; (0, plain decoding's rate) when
        none beats plain by the margin. `per_token`: what making each draft token costs (a draft model's pass; prompt
        lookup's is free), in the units of cost()."""
        if not self.learn_costs:
            others = 0  # a seeded reply's draft lengths follow from its own text alone, never from other requests
        # A draft must promise a clear gain: the estimates are noisy and a wasted draft slows open chat.
        best_k, best_rate = 0, self.margin * (others + 1) / self.cost(others + 1)
        for k in range(1, min(limit, self.draft_max) + 1):
            rate = (others + self.expected_tokens(n_match, k)) / (self.cost(others + 1 + k) + k * per_token)
            if rate > best_rate:
                best_k, best_rate = k, rate
        return best_k, best_rate

    def could_pay(self, per_token: float, *, others: int = 0) -> bool:
        """Whether drafts that cost `per_token` each could beat plain decoding at all, were every one accepted: if
        not, a draft model is never even probed (the starter drafting for itself on a CPU)."""
        plain = self.margin * (others + 1) / self.cost(others + 1)
        return any((others + 1 + k) / (self.cost(others + 1 + k) + k * per_token) > plain
                   for k in range(1, self.draft_max + 1))

    def observe_cost(self, n_tokens: int, seconds: float, *, weight: float = 0.2) -> None:
        """A forward pass of `n_tokens` took `seconds`: move that size's cost estimate towards it."""
        if not self.learn_costs or not 1 <= n_tokens < len(self._base) or seconds <= 0:
            return
        ratio = seconds / self._base[n_tokens]
        old = self._ratio.get(n_tokens)
        self._ratio[n_tokens] = ratio if old is None else old + weight * (ratio - old)
        # Once per step, so one vectorised pass over the table: sizes between those seen are interpolated; below
        # them the measured shape is scaled; beyond them the scaled shape, or the seen trend when that is cheaper
        # (optimism here costs one pass of a longer draft, which is then seen and corrected).
        base = np.asarray(self._base)
        seen = np.array(sorted(self._ratio))
        est = base[seen] * np.array([self._ratio[m] for m in seen])
        ns = np.arange(len(base))
        costs = np.interp(ns, seen, est)
        lo, hi = seen[0], seen[-1]
        costs[ns < lo] = base[ns < lo] * self._ratio[lo]
        above = ns > hi
        scaled = base[above] * self._ratio[hi]
        if len(seen) > 1:
            slope = max(0.0, (est[-1] - est[-2]) / (hi - seen[-2]))
            scaled = np.minimum(scaled, est[-1] + slope * (ns[above] - hi))
        costs[above] = scaled
        costs[0] = 0.0
        self._costs = costs.tolist()

    def cost(self, n_tokens: int) -> float:
        """A pass of `n_tokens` rows; beyond the table (a batch of many slots), its last step continued."""
        table = self._costs
        if n_tokens < len(table):
            return table[n_tokens]
        return table[-1] + (table[-1] - table[-2]) * (n_tokens - len(table) + 1)

    def update(self, n_match: int, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        d = self.decay
        fa, fr, ca, cr = (x * d for x in (self._acc.get(n_match) or _prior(n_match)))
        if accepted == 0:
            fr += 1
        else:
            fa += 1
            ca += accepted - 1
            cr += accepted < drafted
        self._acc[n_match] = [fa, fr, ca, cr]


# The keys a draft model's and a model's MTP heads' acceptance is learnt under (prompt lookup's are n-gram lengths,
# a prediction's PREDICTED + n).
DRAFT_MODEL = 128
MTP = 192


def _prior(n_match: int) -> list[float]:
    """Before any evidence a longer match predicts better: a0 = n/(n+2) (1/3 for a 1-gram, 2/3 for a 4-gram),
    a1 = (n+1)/(n+2). Cautious on purpose: a wasted draft costs open-ended chat speed. A draft model: a0 = 0.6,
    a1 = 2/3 (a family's small model agrees with its large one on most easy tokens). MTP heads: a0 = 0.75, a1 = 0.6
    (llama-server reports about 75% of 3 drafted tokens accepted; they were trained with the model)."""
    if n_match >= MTP:
        return [3.0, 1.0, 1.5, 1.0]
    if n_match >= DRAFT_MODEL:
        return [1.5, 1.0, 2.0, 1.0]
    return [float(n_match), 2.0, float(n_match + 1), 1.0]


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
