"""Producing a reply's tokens: plain decoding, or drafts verified in one forward pass.

Drafts come from prompt lookup (the conversation, a client's prediction), draft models or the model's MTP heads;
each step the policy (engine/draft_policy.py) picks the source and length that promise the most tokens a second, or
none.
With greedy sampling the output is that of plain greedy decoding. With sampling, each verified row
goes through the whole sampler chain and a draft token is kept only while the sample equals it (or, drawn by a
draft model, by speculative sampling); the first sample that differs is emitted and the step ends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from basics.errors import LanternError
from engine.draft_policy import DRAFT_MODEL, MTP, PROBE_DRAFT, DraftLengthPolicy
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
    by_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [drafted, accepted]

    def count(self, key: int, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if PREDICTED <= key < DRAFT_MODEL:
            self.accepted_predicted += accepted
        both = self.by_source.setdefault(source_of(key), [0, 0])
        both[0] += drafted
        both[1] += accepted


def source_of(key: int) -> str:
    """The name the figures give a draft's source, from the key its acceptance is learnt under."""
    if key >= MTP:
        return "mtp"
    return "draft model" if key >= DRAFT_MODEL else "prediction" if key >= PREDICTED else "lookup"


@dataclass
class Draft:
    tokens: list[int]
    key: int  # the policy's key: a matched n-gram's length, PREDICTED + n, DRAFT_MODEL or MTP
    dists: list | None = None  # the draft model's distribution of each token, when it sampled them
    shadow: tuple[list[int], int] = ([], 0)  # prompt lookup's proposal, when not sent (engine/decoding._Shadow)


@dataclass
class Lookup:
    """Where drafts come from: prompt lookup (the conversation, a prediction), and draft models and the model's MTP
    heads (`models`: engine/draft_model.DraftModel, engine/mtp_drafter.MtpDrafter), under one policy: each step
    the source that promises the most tokens a second drafts, or none."""

    drafter: PromptLookupDrafter
    policy: DraftLengthPolicy
    adaptive: bool = True  # False: always draft as much as the match and the policy's draft_max allow
    models: tuple = ()
    use_lookup: bool = True
    sampler: Sampler | None = None  # the request's: a draft model samples by it where it can be judged by it
    _waits: dict = field(default_factory=dict)  # by a model's key: plain steps since it last drafted

    def choose(self, n_match: int, available: int, others: int = 0) -> int:
        if self.adaptive:
            return self.policy.choose(n_match, available, others=others)
        return min(available, self.policy.draft_max)

    def next_draft(self, context: list[int], limit: int, batch_others) -> tuple[Draft, int]:
        """This step's draft (empty: a plain step), and the rows other conversations add to the pass."""
        found, n_match = self.drafter.propose(limit) if self.use_lookup else ([], 0)
        others = batch_others() if batch_others is not None and (found or self.models) else 0
        model, k_model = self._pick_model(found, n_match, limit, others) if self.models else (None, 0)
        if k_model:
            draw = getattr(self.sampler, "draft", None) if getattr(self.sampler, "judge", None) else None
            tokens, dists = model.propose(context, k_model, draw)
            if tokens:
                return Draft(tokens, model.key, dists if draw is not None else None), others
        k = self.choose(n_match, len(found), others) if found else 0
        return Draft(found[:k], n_match, shadow=(found, n_match)), others

    def _pick_model(self, found: list[int], n_match: int, limit: int, others: int) -> tuple[object, int]:
        """The model that drafts now and how many tokens: none where lookup promises more or nothing pays; a
        model that has not drafted for a while is probed now and then (its acceptance is learnt only from its
        drafts)."""
        policy = self.policy
        if not self.adaptive:
            return self.models[0], min(limit, policy.draft_max)
        costs = {m.key: (m.token_seconds if policy.learn_costs else m.relative_cost * policy.cost(1))
                 for m in self.models}
        rated = [(policy.best(m.key, limit, others=others, per_token=costs[m.key]), m) for m in self.models]
        (k, rate), best = max(rated, key=lambda r: r[0][1] if r[0][0] else -1.0)
        if k and (not found or rate > policy.best(n_match, len(found), others=others)[1]):
            self._waits[best.key] = 0
            return best, k
        for (k_m, _), m in rated:
            self._waits[m.key] = self._waits.get(m.key, 0) + (not k_m)
        for (k_m, _), m in rated:
            if (not k_m and not others and self._waits[m.key] >= policy.probe_every
                    and policy.could_pay(costs[m.key])):
                self._waits[m.key] = 0
                return m, min(limit, PROBE_DRAFT)
        return None, 0


def produce_tokens(runtime: Runtime, fed: list[int], logits: np.ndarray, sampler: Sampler, context: list[int],
                   counters: DecodeCounters, *, max_new: int, ends: frozenset[int],
                   lookup: Lookup | None = None) -> Iterator[int]:
    """Yield the reply's tokens in order, for as long as the caller asks.

    `fed` is the engine's list of the ids in the KV cache: it is kept exactly in step with it.
    `context` gets every produced token (penalties and the drafters look at it).
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
        draft, others = lookup.next_draft(context, limit, batch_others) if lookup is not None else (_PLAIN, 0)
        counters.forwards += 1
        if not draft.tokens:
            t0 = time.perf_counter()
            logits = runtime.forward([token], runtime.n_past)[0]
            fed.append(token)
            token = sampler(logits, context)
            if lookup is not None and not others:  # timed like a verification step: the pass and its sampling
                lookup.policy.observe_cost(1, time.perf_counter() - t0)
                shadow.follow(lookup.policy, draft.shadow[1], draft.shadow[0], token)
            push(token)
            yield token
            continue
        shadow.reset()
        k = len(draft.tokens)
        t0 = time.perf_counter()
        out = _verify(runtime, fed, token, draft, sampler, context, ends)
        if not others:  # beside others, a pass's time is the whole batch's: no measure of k + 1 rows
            lookup.policy.observe_cost(k + 1, time.perf_counter() - t0)
        accepted = sum(1 for a, b in zip(out, draft.tokens) if a == b)
        counters.count(draft.key, k, accepted)
        lookup.policy.update(draft.key, k, accepted)
        for t in out[:-1]:
            push(t)
            yield t
        token = out[-1]
        push(token)
        yield token


_PLAIN = Draft([], 0)


def _verify(runtime: Runtime, fed: list[int], token: int, draft: Draft, sampler: Sampler,
            context: list[int], ends: frozenset[int]) -> list[int]:
    """Feed `token` and the draft in one pass; return the accepted drafts and the token that follows them.

    A draft token drawn from a draft model's distribution is judged by speculative sampling (engine/sampling.py);
    any other is kept while the target's own sample equals it. The KV cache keeps `token` and the accepted drafts;
    the rejected ones are dropped in `finally`, so an exception never leaves the cache and `fed` out of step.
    """
    start = runtime.n_past
    draft, dists = draft.tokens, draft.dists
    batch = [token, *draft]
    rows = runtime.forward(batch, start, rows=range(len(batch)))  # on failure the runtime rolls back itself
    out: list[int] = []
    try:
        for i in range(len(batch)):
            seen = context + out if out else context
            if dists is not None and i < len(draft):
                y = sampler.judge(rows[i], seen, draft[i], dists[i])
            else:
                y = sampler(rows[i], seen)
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
