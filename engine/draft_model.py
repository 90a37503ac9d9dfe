"""A draft model: a second, small model with the target's vocabulary that proposes the next tokens, which the target
then verifies in one pass (engine/decoding.py).

Its KV cache follows the conversation as the target's does: only new tokens are computed, rejected drafts are cut
back on the next proposal, and a conversation switched away from is saved and restored, not computed again.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from basics.errors import ModelLoadError
from engine.draft_policy import DRAFT_MODEL
from engine.kv_cache import RESTORE_WHEN_GAINING, SAVE_WHEN_DISCARDING
from engine.state_cache import StateCache, common_prefix_len

STATE_RAM_BYTES = 256 << 20  # the draft model's saved conversations (it is small: many fit)


class VocabularyMismatch(ModelLoadError):
    """The draft model's tokens are not the target's, token for token."""


def check_same_vocabulary(target, draft, *, target_name: str = "the model", draft_name: str = "the draft model"):
    """Raise VocabularyMismatch naming the first difference: size, special tokens, then each token's bytes."""
    def differ(what: str) -> VocabularyMismatch:
        return VocabularyMismatch(f"{draft_name} cannot draft for {target_name}: their vocabularies differ "
                                  f"({what}). A draft model must come from the same family, with the same tokenizer.")

    if target.n_vocab != draft.n_vocab:
        raise differ(f"{target.n_vocab} tokens against {draft.n_vocab}")
    ts, ds = target.special, draft.special
    for field in ("bos", "eos", "end_of_turn", "control"):
        a, b = getattr(ts, field), getattr(ds, field)
        if a != b:
            if isinstance(a, frozenset):
                first = min(a ^ b)
                where = target_name if first in a else draft_name
                raise differ(f"token {first} is a {field.replace('_', ' ')} token only in {where}")
            raise differ(f"the {field.upper()} token is {a} in {target_name} and {b} in {draft_name}")
    for token in range(target.n_vocab):
        a, b = target.token_bytes(token), draft.token_bytes(token)
        if a != b:
            raise differ(f"token {token} is {a!r} in {target_name} and {b!r} in {draft_name}")


class DraftModel:
    """Proposes drafts with a small model. One thread owns it: the engine's."""

    source = "draft model"
    key = DRAFT_MODEL  # its acceptance, learnt by the draft policy under this key

    def __init__(self, runtime, target, *, target_name: str = "the model"):
        draft_name = f"The draft model {runtime.model_path.name}"
        check_same_vocabulary(target, runtime, target_name=target_name, draft_name=draft_name)
        # Recurrent layers (Qwen3.5's DeltaNet, Mamba): a draft read one pass at a time is taken back by putting
        # their state back (runtimes/llamacpp_slots.mark_recurrent), on llama.cpp
        self.recurrent = not runtime.can_truncate
        if self.recurrent and not hasattr(runtime, "mark_recurrent"):
            raise ModelLoadError(f"{draft_name} has recurrent layers, whose state this backend cannot take back "
                                 "after a rejected draft. Choose a draft model without them, or run on llama.cpp.")
        self.runtime = runtime
        self.name = runtime.model_path.name
        self._tokens: list[int] = []  # exactly the ids in its KV cache
        self.states = StateCache(ram_bytes=STATE_RAM_BYTES)
        # Seconds per drafted token (a pass of one token), learnt from every proposal; the first from a pass at load.
        self.token_seconds = self._measure()
        # The engine's seeded and greedy replies draft by nominal costs (never timing): a pass of this model against
        # one of the target, by their weights' sizes (on either device a pass reads all the weights once).
        self.relative_cost = _file_size(runtime.model_path) / max(1, _file_size(target.model_path))

    def _measure(self) -> float:
        rt = self.runtime
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            rt.forward([min(100, rt.n_vocab - 1)], 0)
            best = min(best, time.perf_counter() - t0)
            rt.truncate(0)
        return best

    @property
    def cached_tokens(self) -> list[int]:
        return list(self._tokens)

    def propose(self, context: Sequence[int], limit: int, draw=None) -> tuple[list[int], list]:
        """Up to `limit` tokens that follow `context`, and each one's draft distribution (None: drawn greedily).

        `draw(logits, context) -> (token, distribution)` draws a token and gives its distribution (speculative
        sampling, engine/sampling.py); without it the draft is greedy."""
        rt = self.runtime
        limit = min(limit, rt.n_ctx - len(context))  # every draft token but the last is fed
        if limit <= 0 or not context or min(context) < 0:  # an image's positions: this model cannot see them
            return [], []
        t0 = time.perf_counter()
        fed = len(context) - min(common_prefix_len(self._tokens, context), len(context) - 1)
        logits = self._sync(context)
        if fed > 2:  # catching up with a new prompt is its prefill, not what a drafted token costs
            t0 = time.perf_counter()
        ctx = list(context)
        draft, dists = [], []
        mark = rt.mark_recurrent() if self.recurrent and limit > 1 else None
        try:
            for i in range(limit):
                if draw is None:
                    token, dist = int(np.argmax(logits)), None
                else:
                    token, dist = draw(logits, ctx)
                draft.append(token)
                dists.append(dist)
                ctx.append(token)
                if i + 1 < limit:
                    logits = rt.forward([token], rt.n_past)[0]
                    self._tokens.append(token)
        finally:
            if mark is not None:  # the draft's tokens taken back now: the target's verdict comes as one batch
                rt.back_to_mark(mark, len(context))
                del self._tokens[len(context):]
        self._learn((time.perf_counter() - t0) / max(1, len(draft)))
        return draft, dists

    def _learn(self, seconds: float, weight: float = 0.2) -> None:
        self.token_seconds += weight * (seconds - self.token_seconds)

    def _sync(self, context: Sequence[int]) -> np.ndarray:
        """Bring the cache to `context` minus its last token, feed that one (and any others missing); its logits."""
        rt = self.runtime
        n = min(common_prefix_len(self._tokens, context), len(context) - 1)
        if len(self._tokens) - n >= SAVE_WHEN_DISCARDING:
            self.states.put(self._tokens, rt.save_state())  # a conversation switched away from may come back
        match = self.states.best_match(context, better_than=n + RESTORE_WHEN_GAINING)
        if match is not None:
            n_match, entry = match
            rt.restore_state(self.states.load(entry), len(entry.tokens))
            self._tokens = list(entry.tokens)
            n = min(n_match, len(context) - 1)
        if not rt.truncate(n):
            rt.reset()
            n = 0
        del self._tokens[n:]
        logits = None
        for lo in range(n, len(context), rt.n_batch):
            chunk = [int(t) for t in context[lo:lo + rt.n_batch]]
            logits = rt.forward(chunk, rt.n_past)[0]
            self._tokens.extend(chunk)
        return logits

    def close(self) -> None:
        self.runtime.close()


def _file_size(path) -> int:
    try:
        return path.stat().st_size
    except (OSError, AttributeError):
        return 0
