"""Producing a reply's tokens: plain decoding, or prompt lookup drafts verified in one forward pass.

With greedy sampling the output is that of plain greedy decoding. With sampling, each verified row
goes through the whole sampler chain and a draft token is kept only while the sample equals it;
the first sample that differs is emitted and the step ends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from basics.errors import LanternError
from engine.draft_policy import DraftLengthPolicy
from engine.drafting import PREDICTED, PromptLookupDrafter
from engine.sampling import Sampler
from runtimes.runtime import Runtime


class DraftRollbackError(LanternError):
    """A rejected draft could not be taken back out of the cache (the reply ends with this error, never a 500)."""


@dataclass
class DecodeCounters:
    drafted: int = 0
    accepted: int = 0
    forwards: int = 0  # forward passes after the prefill
    accepted_predicted: int = 0  # accepted tokens drafted from a client's predicted output


@dataclass
class Lookup:
    drafter: PromptLookupDrafter
    policy: DraftLengthPolicy
    adaptive: bool = True  # False: always draft as much as the match and the policy's draft_max allow

    def choose(self, n_match: int, available: int, others: int = 0) -> int:
        if self.adaptive:
            return self.policy.choose(n_match, available, others=others)
        return min(available, self.policy.draft_max)


def produce_tokens(runtime: Runtime, fed: list[int], logits: np.ndarray, sampler: Sampler, context: list[int],
                   counters: DecodeCounters, *, max_new: int, ends: frozenset[int],
                   lookup: Lookup | None = None) -> Iterator[int]:
    """Yield the reply's tokens in order, for as long as the caller asks.

    `fed` is the engine's list of the ids in the KV cache: it is kept exactly in step with it.
    `context` gets every produced token (penalties and the drafter look at it).
    """
    produced = 1  # the first token, sampled below from the prefill's logits

    def push(t: int) -> None:
        nonlocal produced
        context.append(t)
        produced += 1
        if lookup is not None:
            lookup.drafter.append(t)

    token = sampler(logits, context)
    context.append(token)
    yield token
    if lookup is not None:  # indexing the new prompt tokens waits until the first token is out
        lookup.drafter.sync(context)
    shadow = _Shadow()
    batch_others = getattr(runtime, "batch_others", None)
    while True:
        if token in ends:
            return
        # Room for the drafts, the token they follow, and one new token after them.
        limit = min(max_new - produced - 1, runtime.n_ctx - runtime.n_past - 2)
        draft, n_match = lookup.drafter.propose(limit) if lookup is not None else ([], 0)
        # other conversations decoding in the same passes (engine/slots.py): their rows share each pass
        others = batch_others() if draft and batch_others is not None else 0
        k = lookup.choose(n_match, len(draft), others) if draft else 0
        counters.forwards += 1
        if k == 0:
            t0 = time.perf_counter()
            logits = runtime.forward([token], runtime.n_past)[0]
            fed.append(token)
            token = sampler(logits, context)
            if lookup is not None and not others:  # timed like a verification step: the pass and its sampling
                lookup.policy.observe_cost(1, time.perf_counter() - t0)
                shadow.follow(lookup.policy, n_match, draft, token)
            push(token)
            yield token
            continue
        shadow.reset()
        draft = draft[:k]
        t0 = time.perf_counter()
        out = _verify(runtime, fed, token, draft, sampler, context, ends)
        if not others:  # beside others, a pass's time is the whole batch's: no measure of k + 1 rows
            lookup.policy.observe_cost(k + 1, time.perf_counter() - t0)
        accepted = sum(1 for a, b in zip(out, draft) if a == b)
        counters.drafted += len(draft)
        counters.accepted += accepted
        if n_match >= PREDICTED:
            counters.accepted_predicted += accepted
        lookup.policy.update(n_match, len(draft), accepted)
        for t in out[:-1]:
            push(t)
            yield t
        token = out[-1]
        push(token)
        yield token


def _verify(runtime: Runtime, fed: list[int], token: int, draft: list[int], sampler: Sampler,
            context: list[int], ends: frozenset[int]) -> list[int]:
    """Feed `token` and `draft` in one pass; return the accepted drafts and the token that follows them.

    The KV cache keeps `token` and the accepted drafts; the rejected ones are dropped in `finally`,
    so an exception never leaves the cache and `fed` out of step.
    """
    start = runtime.n_past
    batch = [token, *draft]
    rows = runtime.forward(batch, start, rows=range(len(batch)))  # on failure the runtime rolls back itself
    out: list[int] = []
    try:
        for i in range(len(batch)):
            y = sampler(rows[i], context + out if out else context)
            out.append(y)
            if i == len(draft) or y != draft[i] or y in ends:
                break
    finally:
        keep = 1 + max(0, len(out) - 1)  # `token` and the accepted drafts; the last sample is not fed
        if not runtime.truncate(start + keep):
            runtime.truncate(start)  # cannot happen on llama.cpp; keep the cache honest anyway
            raise DraftRollbackError("The model's cache could not drop rejected draft tokens.")
        fed.extend(batch[:keep])
    return out


class _Shadow:
    """While plain decoding, check the draft that was not sent against the tokens that came: free evidence of
    how often drafts would be accepted, so the policy starts drafting as soon as the text turns to copying
    (without it, the only evidence is a probe now and then, and one unlucky probe costs dozens of tokens)."""

    SPAN = 8  # tokens of a shadow draft checked at most

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.draft: list[int] = []
        self.n_match = self.checked = self.matched = 0

    def follow(self, policy, n_match: int, draft: list[int], token: int) -> None:
        if not self.draft:
            if not draft or not n_match:
                return
            self.draft, self.n_match = draft[: self.SPAN], n_match
        self.checked += 1
        hit = token == self.draft[self.checked - 1]
        self.matched += hit
        if not hit or self.checked == len(self.draft):
            policy.update(self.n_match, self.checked, self.matched)
            self.reset()
