"""How many threads llama.cpp computes with: never more than the cores other programs leave free.

llama.cpp (built without OpenMP) joins its threads at barriers that spin without yielding. When another program
holds a core one of them needs, the rest spin through that program's whole time slice, every barrier, every layer.
Measured here (2 cores, SmolLM2 decode, one token a step): 2 threads give 144 tok/s on an idle machine but 8 beside
two busy processes, where 1 thread gives 50; beside one busy process, 2 threads give 47 and 1 gives 69.

A user's laptop is rarely idle, so the count follows what the others use: sampled at most every half second from
the system's and this process's CPU times, nothing that blocks. ggml gives every output value to one thread, so the
logits are the same bits at any count (tests/test_threads.py checks that): a seeded reply never depends on it.
"""
from __future__ import annotations

import logging
import os
import time
from collections import namedtuple
from typing import Callable, NamedTuple

import psutil

log = logging.getLogger("lantern.threads")

# A core counts as free when at least this much of it is: a thread on a core others half use spends its waits
# spinning, which costs far more than the thread brings.
FREE_ENOUGH = 0.75
RESAMPLE_S = 0.5


class CpuSample(NamedTuple):
    wall: float  # seconds on a monotonic clock
    busy: float  # CPU seconds every program has spent, summed over the cores (niced programs left out)
    own: float  # CPU seconds this process has spent


def usable_cores() -> int:
    return len(_affinity()) or os.cpu_count() or 1


def _affinity() -> set[int]:
    """The cores this process may run on (a container or `taskset` may give fewer than the machine has)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set()


_process = None


def sample_cpu() -> CpuSample:
    global _process

    _process = _process or psutil.Process()
    t = _busy_of_our_cores(psutil)
    # Programs at a lower priority than Lantern yield their core to it, so they cost its threads no spinning:
    # their time counts only when Lantern itself runs niced (then its own time is in `nice` too).
    niced_lantern = getattr(os, "nice", None) is not None and os.nice(0) > 0
    busy = sum(getattr(t, f, 0.0) for f in ("user", "system", "irq", "softirq", "steal", "interrupt", "dpc"))
    if niced_lantern or not hasattr(t, "nice"):
        busy += getattr(t, "nice", 0.0)
    own = _process.cpu_times()
    return CpuSample(time.monotonic(), busy, own.user + own.system)


# The CPU times that count as busy (psutil's names; where a platform lacks one, it counts 0)
_Times = namedtuple("_Times", "user system irq softirq steal nice", defaults=(0.0,) * 6)


def _busy_of_our_cores(psutil):
    """CPU times summed over the cores Lantern may use: work on cores it cannot use costs its threads nothing, and
    the count it compares with is that of its own cores (usable_cores)."""
    cores = _affinity()
    per_core = psutil.cpu_times(percpu=True)
    if not cores or len(cores) >= len(per_core) or max(cores) >= len(per_core):
        return psutil.cpu_times()  # every core, or ids psutil does not list one by one (offline cores)
    fields = [f for f in _Times._fields if hasattr(per_core[0], f)]
    return _Times(**{f: sum(getattr(per_core[i], f) for i in cores) for f in fields})


class ThreadChooser:
    """The thread count for the next step: `most` on an idle machine, down to 1 as other programs take cores."""

    def __init__(self, most: int, *, cores: int | None = None, sample: Callable[[], CpuSample] = sample_cpu,
                 clock: Callable[[], float] = time.monotonic, resample_s: float = RESAMPLE_S):
        self.most = max(1, most)
        self.cores = cores or usable_cores()
        self._sample, self._clock, self._resample_s = sample, clock, resample_s
        self.threads = self.most
        self.others: float | None = None  # cores other programs used lately (smoothed)
        self.samples = 0
        self._last = self._read()

    def _read(self) -> CpuSample:
        try:
            return self._sample()
        except Exception as e:  # psutil refused (a sandbox, an odd platform): keep the count it has, stop asking
            log.info("CPU times unreadable (%s): computing with %d threads whatever the load", e, self.threads)
            self._resample_s = float("inf")
            return CpuSample(float("inf"), 0.0, 0.0)

    def choose(self) -> int:
        if self._clock() - self._last.wall < self._resample_s:
            return self.threads  # one clock read a step; the CPU times are read twice a second at most
        now = self._read()
        span = now.wall - self._last.wall
        if span <= 0:
            return self.threads
        others = max(0.0, (now.busy - self._last.busy) - (now.own - self._last.own)) / span
        self._last, self.samples = now, self.samples + 1
        # Half the weight on the last half second: one busy moment (a compile, a page load) is followed, but a
        # single odd sample does not swing the count.
        self.others = others if self.others is None else 0.5 * self.others + 0.5 * others
        free = self.cores - self.others
        self.threads = max(1, min(self.most, int(free + 1 - FREE_ENOUGH)))
        return self.threads
