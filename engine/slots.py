"""Several conversations at once on one model (continuous batching), with each conversation's KV reuse and prompt
lookup kept: issue 20's scheduler.

One thread owns the model (the scheduler). Each slot runs an ordinary Engine on a thread of its own, against a
SlotRuntime: a view of one KV sequence whose forward() hands its tokens to the scheduler and waits. Each step the
scheduler gathers what every generating slot asked for and computes it as one batch: the slots' next tokens (or
verified drafts) first, then chunks of waiting prompts up to n_batch, so a long prompt never holds the others' tokens
for more than one step. Everything else that touches llama.cpp (cutting back, saving and restoring a slot) runs on
the scheduler's thread too, between steps.

A request goes to the free slot whose cached tokens share the longest prefix with its prompt (llama.cpp's slot
similarity); the state cache is shared by all slots, so a conversation that lost its slot comes back from it.
Greedy replies equal their solo replies up to numerical near ties (a batch's logits differ slightly from a single
sequence's: tests/conftest.py). A seeded reply draws the same number at every position alone or beside others, so it
parts from its solo reply only where a batch moves a token's boundary across a close draw (tests/test_slots.py).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from basics.errors import InvalidRequestError, LanternError
from engine.engine import Engine
from engine.events import GenerationRequest
from engine.state_cache import StateCache, common_prefix_len
from engine.worker import _DONE, Generation, QueuedWorker, _fail, park_thread
from runtimes.runtime import check_forward

GATHER_S = 0.002  # how long a step waits for slots still choosing their next tokens (Python, between passes)
# A prefix another slot holds is shared when it is this many tokens longer than a slot's own: long system prompts and
# tool lists, where it saves a real prefill. A prompt read in two pieces gives logits up to ~1.2 apart from the same
# prompt read whole (llama.cpp's kernels differ by batch size), so short prefixes are not worth that difference.
SHARE_AT_LEAST = 256


def _priority(job) -> int:
    return job.request.priority if isinstance(job, Generation) else 0


@dataclass
class _Forward:
    seq: int
    tokens: list[int]
    rows: list[int]
    priority: int = 0
    done: int = 0  # tokens computed so far (a long prompt goes in chunks, one a step)
    out: list[np.ndarray] = field(default_factory=list)
    future: Future = field(default_factory=Future)


class Scheduler:
    """Owns the multi-sequence runtime; computes the slots' passes in batches (see the module's words)."""

    def __init__(self, runtime, *, gather_s: float = GATHER_S):
        self.runtime = runtime
        self.gather_s = gather_s
        self._lock = threading.Condition()
        self._ops: deque = deque()  # (fn, future): run between steps, in order
        self._waiting: dict[int, _Forward] = {}
        self._active: set[int] = set()  # slots with a reply in progress (their forwards are awaited)
        self._lone = False  # a lone slot's pass runs on its own thread (forward())
        self._stepping = False  # the scheduler's thread is running ops or a step
        self._closed = False
        self.steps: list[list[tuple[int, int]]] = []  # (seq, tokens) of each batch: for tests and figures
        self.keep_steps = False
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lantern-scheduler", daemon=True)
        self._thread.start()

    # -- from the slots' threads --------------------------------------------------------------------

    def run(self, fn: Callable[[], object]):
        """`fn()` on the scheduler's thread, between steps; its result or exception here."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise LanternError("The model was unloaded.")
            self._ops.append((fn, future))
            self._lock.notify_all()
        return future.result()

    def forward(self, seq: int, tokens: Sequence[int], rows: Sequence[int], *, priority: int = 0) -> np.ndarray:
        job = _Forward(seq, [int(t) for t in tokens], list(rows), priority)
        with self._lock:
            if self._closed:
                raise LanternError("The model was unloaded.")
            alone = (not self._stepping and not self._ops and not self._waiting and self._active <= {seq}
                     and len(job.tokens) <= self.runtime.n_batch)
            if alone:
                self._lone = True  # the scheduler's thread starts no step and no op until this pass is done
            else:
                self._waiting[seq] = job
                self._lock.notify_all()
        if not alone:
            return job.future.result()
        # The only conversation in progress computes its pass on its own thread: two thread hand-offs a token cost a
        # lone client ~0.1-0.2 ms, a tenth of a token on a GPU. Still one thread at a time on the model (_lone and
        # _stepping exclude each other).
        try:
            if self.keep_steps:
                self.steps.append([(seq, len(job.tokens))])
            return self.runtime.forward_seqs([(seq, job.tokens, job.rows)])[0]
        finally:
            with self._lock:
                self._lone = False
                self._lock.notify_all()

    def active_count(self) -> int:
        return len(self._active)  # read without the lock: a set's length, a moment's figure

    def set_active(self, seq: int, active: bool) -> None:
        with self._lock:
            (self._active.add if active else self._active.discard)(seq)
            self._lock.notify_all()

    # -- the scheduler's thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._stepping = False
                self._lock.notify_all()
                while not self._closed and (self._lone or (not self._ops and not self._waiting)):
                    self._lock.wait()
                if self._closed:
                    break
                self._stepping = True
                ops = list(self._ops)
                self._ops.clear()
            for fn, future in ops:
                try:
                    future.set_result(fn())
                except BaseException as e:
                    future.set_exception(e)
            if ops:
                continue  # an op may have freed or filled a slot: look again before the step
            with self._lock:  # a short wait for slots still choosing their tokens, so their rows join this step
                deadline = time.monotonic() + self.gather_s
                while (not self._closed and not self._ops and
                       not self._active <= set(self._waiting) and time.monotonic() < deadline):
                    self._lock.wait(max(0.0, deadline - time.monotonic()))
                if self._ops:
                    continue
                jobs = list(self._waiting.values())
            if jobs:
                self._step(jobs)
        with self._lock:
            left = list(self._waiting.values()) + [f for _fn, f in self._ops]
            self._waiting.clear()
            self._ops.clear()
        for job in left:
            (job.future if isinstance(job, _Forward) else job).set_exception(LanternError("The model was unloaded."))
        self._finished.set()
        if getattr(self.runtime, "parks_its_thread", False):
            park_thread()

    def _step(self, jobs: list[_Forward]) -> None:
        """One batch: every short pass (a next token, a draft) whole, then prompt chunks, the higher priority's
        first, else in arrival order."""
        budget = self.runtime.n_batch
        items, taken = [], []
        short = [j for j in jobs if len(j.tokens) - j.done <= 32]
        long_ = sorted((j for j in jobs if len(j.tokens) - j.done > 32), key=lambda j: -j.priority)
        for job in short + long_:
            left = len(job.tokens) - job.done
            n = left if job in short else min(left, budget)
            if n <= 0 or (job in long_ and budget <= 0):
                continue
            lo, hi = job.done, job.done + n
            items.append((job.seq, job.tokens[lo:hi], [r - lo for r in job.rows if lo <= r < hi]))
            taken.append((job, hi))
            budget -= n
        if self.keep_steps:
            self.steps.append([(seq, len(tokens)) for seq, tokens, _r in items])
        try:
            outs = self.runtime.forward_seqs(items)
        except BaseException as e:
            with self._lock:
                for job, _hi in taken:
                    self._waiting.pop(job.seq, None)
            for job, _hi in taken:
                job.future.set_exception(e)
            return
        finished = []
        for (job, hi), out in zip(taken, outs):
            job.out.append(out)
            job.done = hi
            if hi == len(job.tokens):
                finished.append(job)
        with self._lock:
            for job in finished:
                self._waiting.pop(job.seq, None)
        for job in finished:
            job.future.set_result(np.concatenate(job.out) if len(job.out) > 1 else job.out[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._finished.wait(30)


class SlotRuntime:
    """One KV sequence of a multi-sequence runtime, with the Runtime interface an Engine expects."""

    def __init__(self, scheduler: Scheduler, seq: int, make_room: Callable[[int, int], None] | None = None):
        self._scheduler, self.seq = scheduler, seq
        self._rt = scheduler.runtime
        self.priority = 0  # the running request's (its prompt chunks go first when higher)
        self._make_room = make_room  # (seq, tokens): idle slots give back their cells as a reply grows

    def __getattr__(self, name):  # what does not touch the cache: facts, tokenizer (read-only in llama.cpp)
        return getattr(self._rt, name)

    @property
    def n_past(self) -> int:
        return self._rt.seq_past(self.seq)

    def batch_others(self) -> int:
        """How many other slots have a reply in progress (their rows share this slot's passes)."""
        return self._scheduler.active_count() - 1

    def forward(self, tokens: Sequence[int], start: int, *, rows: Sequence[int] | None = None) -> np.ndarray:
        vision = getattr(self._rt, "vision", None)
        if vision is not None and any(t < 0 for t in tokens):
            return self._forward_with_images(vision, [int(t) for t in tokens], start, rows)
        rows = check_forward(self, tokens, start, rows)
        if self._make_room is not None:
            self._make_room(self.seq, len(tokens))
        return self._scheduler.forward(self.seq, tokens, rows, priority=self.priority)

    def _forward_with_images(self, vision, tokens: list[int], start: int, rows) -> np.ndarray:
        """Text runs batched with the other slots; each image encoded between steps (runtimes/vision.py)."""
        runs = vision.runs(tokens)  # images whole, as prepared
        rows = check_forward(self, [0] * len(tokens), start, rows)
        if any(image is not None and lo <= r < hi for lo, hi, image in runs for r in rows):
            raise InvalidRequestError("forward() gives no logits at an image's positions.")
        out = np.empty((len(rows), self._rt.n_vocab), dtype=np.float32)
        try:
            for lo, hi, image in runs:
                if image is not None:
                    self._scheduler.run(lambda image=image: self._rt.evaluate_image(self.seq, image))
                    continue
                want = [(i, r - lo) for i, r in enumerate(rows) if lo <= r < hi]
                got = self._scheduler.forward(self.seq, tokens[lo:hi], [r for _i, r in want], priority=self.priority)
                for (i, _r), row in zip(want, got):
                    out[i] = row
        except BaseException:
            self._scheduler.run(lambda: self._rt.truncate_seq(self.seq, start))  # nothing of it stays
            raise
        return out

    def truncate(self, n_keep: int) -> bool:
        return self._scheduler.run(lambda: self._rt.truncate_seq(self.seq, n_keep))

    def reset(self) -> None:
        self._scheduler.run(lambda: self._rt.clear_seq(self.seq))

    def save_state(self):
        return self._scheduler.run(lambda: self._rt.save_seq(self.seq))

    def restore_state(self, data, n_tokens: int) -> None:
        self._scheduler.run(lambda: self._rt.restore_seq(self.seq, data, n_tokens))

    def close(self) -> None:
        pass  # the scheduler's owner closes the model


class LockedStateCache:
    """The state cache shared by the slots' threads, one at a time."""

    def __init__(self, cache: StateCache):
        self._cache, self._lock = cache, threading.RLock()

    def __getattr__(self, name):
        attr = getattr(self._cache, name)
        if not callable(attr):
            return attr

        def locked(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)
        return locked

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)


class SlotWorker(QueuedWorker):
    """Replies for several requests at once, one per slot, with the EngineWorker's interface (submit, call,
    wait_ready, when_ready, close): the model loads on a thread of its own, from `make_runtime()`."""

    def __init__(self, make_runtime, *, options=None, state_cache: StateCache | None = None,
                 gather_s: float = GATHER_S):
        self._free: list[int] = []
        self._used: dict[int, float] = {}  # when each slot last finished a job
        self._queue: deque = deque()  # Generations, and (fn, Future) calls
        self._lock = threading.Lock()
        self._slot_done = threading.Condition(self._lock)  # a slot finished: its cells can be given back
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.runtime = self.scheduler = None
        self.engines = []
        self._ready: Future = Future()
        self._loader = threading.Thread(target=self._load, args=(make_runtime, options, state_cache, gather_s),
                                        name="lantern-slots-load", daemon=True)
        self._loader.start()

    def _load(self, make_runtime, options, state_cache, gather_s) -> None:
        try:
            made = make_runtime() if callable(make_runtime) else make_runtime
            # make_runtime may also give the Engine's own arguments (the backend's label, why it was chosen)
            self.runtime, extra = made if isinstance(made, tuple) else (made, {})
            self.scheduler = Scheduler(self.runtime, gather_s=gather_s)
            shared = LockedStateCache(state_cache if state_cache is not None else StateCache())
            for seq in range(self.runtime.slots):
                self.scheduler.set_active(seq, True)  # its load-time measurement runs through the scheduler
                try:  # (forward-pass costs are measured once per model and context: the other slots reuse them)
                    self.engines.append(Engine(SlotRuntime(self.scheduler, seq, self._grow), state_cache=shared,
                                               options=options,
                                               **extra))
                finally:
                    self.scheduler.set_active(seq, False)
        except BaseException as e:
            if self.scheduler is not None:
                self.scheduler.close()
            if self.runtime is not None:
                self.runtime.close()
            self._ready.set_exception(e)
            self._refuse_waiting()
            return
        self._ready.set_result(self.engines[0])
        with self._lock:
            self._free = list(range(self.runtime.slots))
            self._dispatch()

    def _enqueue(self, job) -> None:
        with self._lock:
            if not self._closed:
                self._queue.append(job)
                self._dispatch()
                return
        _fail(job)

    def _dispatch(self) -> None:
        """Under the lock: the oldest waiting job to the free slot that holds the most of its prompt."""
        while self._queue and self._free:
            job = max(self._queue, key=_priority)  # the first of the highest priority (max keeps the first)
            self._queue.remove(job)
            if isinstance(job, Generation) and job.cancelled:
                job.put(_DONE)  # its client left while it waited: the model never sees it
                continue
            seq = self._best_slot(job.request) if isinstance(job, Generation) else self._free[-1]
            self._free.remove(seq)
            self.scheduler.set_active(seq, True)
            thread = threading.Thread(target=self._run, args=(seq, job), name=f"lantern-slot-{seq}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _best_slot(self, request: GenerationRequest) -> int:
        try:
            prompt = self.engines[0]._prompt_tokens(request)[0]
        except Exception:  # the request's own error comes from its reply; any slot will do
            return self._free[0]
        # the longest shared prefix; on a tie the slot holding least (another conversation's cache stays), then the
        # one used longest ago
        return max(self._free, key=lambda s: (common_prefix_len(self.engines[s].cached_tokens, prompt),
                                              -self.runtime.seq_past(s), -self._used.get(s, 0.0), -s))

    def _make_room(self, seq: int, gen: Generation) -> None:
        """Idle slots give their cells back when the request would not fit beside them: each one's state goes to the
        state cache (a conversation that comes back is restored, not computed again), least recently used first.
        While the other slots are all busy, the request waits for one to finish (it may be cancelled meanwhile)."""
        try:
            prompt = self.engines[seq]._prompt_tokens(gen.request)[0]
        except Exception:
            return  # the request's own error comes from its reply
        rt = self.runtime
        # room for the prompt and some reply; a longer reply takes more from idle slots as it grows (_grow)
        need = len(prompt) + min(gen.request.max_tokens or rt.n_ctx // 4, rt.n_ctx // 4)
        if need > rt.n_ctx:
            return  # it cannot fit even alone: its reply says so (nothing to wait for)
        while rt.cells_used(without=seq) + need > rt.n_ctx:
            if self._evict_idle(seq):
                continue
            with self._lock:
                if self._closed or gen.cancelled:
                    return
                self._slot_done.wait(0.25)  # a busy slot finishing leaves its cells to give back

    def _grow(self, seq: int, n: int) -> None:
        """Before `n` more tokens of slot `seq`'s reply: idle slots give back their cells (saved to the state cache,
        least recently used first) until they fit. Where the busy slots hold the rest, the pass meets a full
        context and the reply ends there with "length" (issue 32: it was an error)."""
        rt = self.runtime
        while rt.cells_used() + n > rt.n_ctx and self._evict_idle(seq):
            pass

    def _evict_idle(self, keep: int) -> bool:
        """Empty the least recently used idle slot that holds cells (never `keep`); False when there is none."""
        rt = self.runtime
        with self._lock:
            idle = sorted((s for s in self._free if s != keep and rt.seq_past(s)), key=lambda s: self._used.get(s, 0.0))
            if not idle:
                return False
            victim = idle[0]
            self._free.remove(victim)  # claimed while it is emptied
        try:
            self.engines[victim]._save_current()
            self.engines[victim].forget_cache()
        finally:
            with self._lock:
                self._free.append(victim)
        return True

    def _share_prefix(self, seq: int, request: GenerationRequest) -> None:
        """Start from another slot's cells when it holds a longer prefix of the prompt than this slot does (one
        system prompt, one tool list): llama_memory_seq_cp shares those cells, nothing is computed again."""
        try:
            prompt = self.engines[seq]._prompt_tokens(request)[0]
        except Exception:
            return
        engine, rt = self.engines[seq], self.runtime
        if not rt.can_truncate:
            return  # a recurrent state holds its conversation's end, never a prefix to share
        own = common_prefix_len(engine.cached_tokens, prompt)

        def copy() -> int:  # on the scheduler's thread: no pass of any slot runs meanwhile
            best, source = own, None
            for other in range(rt.slots):
                if other == seq:
                    continue
                # a snapshot, bounded by what the cache really holds (its engine may be between a cut and a note)
                n = min(common_prefix_len(list(self.engines[other].cached_tokens), prompt), rt.seq_past(other))
                if n > best:
                    best, source = n, other
            if source is None or best < own + SHARE_AT_LEAST:
                return None
            rt.clear_seq(seq)
            try:
                rt.copy_seq(source, seq, best)
            except LanternError:  # a sliding window that no longer covers that prefix: this slot starts empty
                return 0
            return best

        if len(engine.cached_tokens) - own >= 64:
            engine._save_current()  # this slot's own conversation stays in the state cache
        shared = self.scheduler.run(copy)
        if shared is not None:
            engine.adopt_cache(prompt[:shared])

    def _run(self, seq: int, job) -> None:
        try:
            if isinstance(job, Generation):
                try:
                    self._make_room(seq, job)
                    self._share_prefix(seq, job.request)
                    self.engines[seq].runtime.priority = job.request.priority
                    job.run_on(self.engines[seq])
                except Exception as e:
                    job.put(e)
                finally:
                    job.put(_DONE)
            else:
                fn, future = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(self.engines[seq]))
                    except BaseException as e:
                        future.set_exception(e)
        finally:
            self.scheduler.set_active(seq, False)
            with self._lock:
                self._used[seq] = time.monotonic()
                self._free.append(seq)
                self._slot_done.notify_all()
                if not self._closed:
                    self._dispatch()

    def _refuse_waiting(self) -> None:
        """No more jobs: the waiting ones end at once, saying so."""
        with self._lock:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._slot_done.notify_all()  # a request waiting for room stops waiting
        for job in waiting:
            _fail(job)

    def close(self, timeout: float = 30.0) -> None:
        self._refuse_waiting()
        self._loader.join(timeout)
        for thread in list(self._threads):
            thread.join(timeout)
        if self.scheduler is not None:
            self.scheduler.close()
        for engine in self.engines:
            engine.close()  # its SlotRuntime leaves the model open
        if self.runtime is not None and self._ready.done() and self._ready.exception() is None:
            self.runtime.close()
