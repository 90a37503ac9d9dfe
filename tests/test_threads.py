"""The thread count follows the machine's load (machine/threads.py), and the logits never depend on it."""
import time

import numpy as np
import pytest
from conftest import load

from machine.threads import CpuSample, ThreadChooser, sample_cpu


class Machine:
    """CPU times as a script says: `others` cores busy beside Lantern's `own`, one sample per half second."""

    def __init__(self):
        self.wall = self.busy = self.own = 0.0

    def run(self, seconds, *, others, own=0.0):
        self.wall += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds

    def sample(self):
        return CpuSample(self.wall, self.busy, self.own)


def chooser(most, cores):
    m = Machine()
    return m, ThreadChooser(most, cores=cores, sample=m.sample, clock=lambda: m.wall)


@pytest.mark.parametrize("cores, most, others, expected", [
    (2, 2, 0.0, 2),  # an idle machine: every thread
    (2, 2, 2.0, 1),  # two busy programs on two cores: one thread (2 spin 18x slower here)
    (2, 2, 1.0, 1),  # one of two cores taken
    (2, 2, 0.2, 2),  # a light background load leaves the core usable
    (2, 2, 0.5, 1),  # half a core is not free enough
    (8, 4, 3.0, 4),  # room left for all the threads it wants
    (8, 8, 3.0, 5),
    (16, 8, 40.0, 1),  # more busy than cores: still one
])
def test_the_count_leaves_the_cores_others_use(cores, most, others, expected):
    m, c = chooser(most, cores)
    for _ in range(8):
        m.run(0.5, others=others, own=min(c.threads, cores - min(others, cores)))
        c.choose()
    assert c.threads == expected
    assert c.others == pytest.approx(others)


def test_the_count_comes_back_when_the_load_goes_and_lantern_own_work_never_counts():
    m, c = chooser(2, 2)
    for others, expected in ((2.0, 1), (0.0, 2), (1.5, 1), (0.0, 2)):
        for _ in range(6):
            m.run(0.5, others=others, own=2.0 - others if others < 2 else 0.7)
            c.choose()
        assert c.threads == expected, f"with {others} cores busy"


def test_the_cpu_times_are_read_twice_a_second_at_most():
    reads = []
    m = Machine()

    def sample():
        reads.append(m.wall)
        return m.sample()

    c = ThreadChooser(2, cores=2, sample=sample, clock=lambda: m.wall)
    for _ in range(100):
        m.run(0.01, others=2.0)
        c.choose()
    assert len(reads) == 3  # at start, then at 0.5 s and 1.0 s
    assert c.threads == 1


def test_unreadable_cpu_times_keep_the_count():
    def sample():
        raise PermissionError("no /proc here")

    c = ThreadChooser(3, cores=4, sample=sample)
    assert c.choose() == 3 and c.samples == 0


def until_sampled(c, n, step=lambda: time.sleep(0.05)):
    while c.samples < n:  # counts samples, not seconds: the same on a fast or a slow machine
        step()
        c.choose()


def test_real_cpu_times_see_two_busy_programs(cpu_hog):
    c = ThreadChooser(64, sample=sample_cpu)
    until_sampled(c, 4)
    assert c.others >= 0.8 * min(2, c.cores)
    assert c.threads <= max(1, c.cores - 1)


def test_the_runtime_computes_with_fewer_threads_beside_busy_programs(smollm2_path, cpu_hog):
    rt = load(smollm2_path)  # no thread count given: it follows the load
    try:
        prompt = rt.tokenize("Count with me: one, two, three", add_bos=True)
        rt.forward(prompt, 0)

        def step():
            if rt.n_past >= rt.n_ctx - 1:
                rt.truncate(len(prompt))
            rt.forward([prompt[rt.n_past % len(prompt)]], rt.n_past)

        until_sampled(rt._threads, 3, step)
        assert rt.threads_in_use <= max(1, rt._threads.cores - 1)
        assert rt._C.llama_n_threads(rt._ctx) == rt.threads_in_use  # llama.cpp got the count
    finally:
        rt.close()


def test_a_thread_count_the_user_sets_stays(smollm2_path, cpu_hog):
    rt = load(smollm2_path, n_threads=2)
    try:
        prompt = rt.tokenize("Count with me: one, two, three", add_bos=True)
        rt.forward(prompt, 0)
        assert rt.threads_in_use == 2 and rt._C.llama_n_threads(rt._ctx) == 2
    finally:
        rt.close()


@pytest.mark.parametrize("model", ["smollm2_path", "gemma_path"])
def test_the_logits_are_the_same_bits_at_any_thread_count(model, request):
    """The rule seeded replies rest on: the count changes with the load, the numbers never do."""
    path = request.getfixturevalue(model)
    outputs = []
    for threads in (1, 2):  # more threads than the cores would only spin (threads.py)
        rt = load(path, n_threads=threads)
        try:
            tokens = rt.tokenize("The quick brown fox jumps over the lazy dog. " * 12, add_bos=True)
            prefill = rt.forward(tokens, 0, rows=list(range(len(tokens))))
            draft = rt.forward(tokens[1:6], len(tokens), rows=list(range(5)))
            single = rt.forward(tokens[6:7], len(tokens) + 5)
            outputs.append(np.concatenate([prefill, draft, single]))
        finally:
            rt.close()
    assert outputs[0].tobytes() == outputs[1].tobytes()


def test_busy_time_is_read_from_the_cores_lantern_may_use_only(monkeypatch):
    """Under `taskset` or in a container, work on cores Lantern cannot use must not drive its threads down: the busy
    time compared with its own cores is that of those cores (issue 32)."""
    import os
    from collections import namedtuple

    import psutil

    T = namedtuple("T", "user nice system idle iowait irq softirq steal")
    ours, others_core = T(1.0, 0, 0.5, 8, 0, 0, 0, 0), T(9.0, 0, 1.0, 0, 0, 0, 0, 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(psutil, "cpu_times",
                        lambda percpu=False: [ours, ours, others_core, others_core] if percpu
                        else T(*[2 * a + 2 * b for a, b in zip(ours, others_core)]))
    sample = sample_cpu()
    assert sample.busy == pytest.approx(3.0)  # cores 0 and 1: 1.5 each; the busy cores 2 and 3 are not Lantern's
