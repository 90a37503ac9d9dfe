"""Prompt-lookup drafting: propose the next tokens by finding the latest n-gram in the context.

The index is updated as tokens arrive (a few dict writes per token), never rebuilt by a scan of the
whole context per step, unlike llama-cpp-python's LlamaPromptLookupDecoding.
"""
from __future__ import annotations

import bisect
from typing import Sequence


class PromptLookupDrafter:
    """Longest n-gram first (n from `ngram_max` down to 1), most recent occurrence preferred."""

    def __init__(self, *, ngram_max: int = 3):
        if ngram_max < 1:
            raise ValueError("ngram_max must be at least 1")
        self.ngram_max = ngram_max
        self._tokens: list[int] = []
        # _follow[n][ngram] = index of the token that followed the latest occurrence of `ngram`
        self._follow: list[dict[tuple[int, ...], int]] = [{} for _ in range(ngram_max + 1)]

    def __len__(self) -> int:
        return len(self._tokens)

    def sync(self, tokens: Sequence[int]) -> None:
        """Make the index cover exactly `tokens`: appends when they extend it, else rebuilds."""
        n = len(self._tokens)
        if len(tokens) >= n and list(tokens[:n]) == self._tokens:
            self.extend(tokens[n:])
        else:
            self._tokens = []
            self._follow = [{} for _ in range(self.ngram_max + 1)]
            self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        toks = self._tokens
        i = len(toks)
        for n in range(1, min(self.ngram_max, i) + 1):
            self._follow[n][tuple(toks[i - n:i])] = i
        toks.append(int(token))

    def propose(self, limit: int) -> tuple[list[int], int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the context's tail.

        Returns (draft, n) where n is the length of the matched n-gram (0: no match).
        """
        toks = self._tokens
        if limit <= 0:
            return [], 0
        for n in range(min(self.ngram_max, len(toks)), 0, -1):
            pos = self._follow[n].get(tuple(toks[-n:]))
            if pos is not None:
                draft = toks[pos:pos + limit]
                for i, t in enumerate(draft):
                    if t < 0:  # an image's position (runtimes/vision.py) is never a token to draft
                        draft = draft[:i]
                        break
                return draft, n
        return [], 0


# Matches in a client's predicted output are counted apart (their acceptance is learnt apart too).
PREDICTED = 64


class PredictionDrafter:
    """Drafts from a predicted output (OpenAI's `prediction`) first, else from the conversation.

    The prediction is followed in order: the context's tail is looked up at or after where the last match was,
    so an edit of a file whose lines repeat still drafts the right line.
    """

    def __init__(self, context: PromptLookupDrafter, prediction: Sequence[int]):
        self.inner = context
        self.ngram_max = context.ngram_max
        self.prediction = list(prediction)
        self._at: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(self.ngram_max + 1)]
        p = self.prediction
        for i in range(1, len(p)):
            for n in range(1, min(self.ngram_max, i) + 1):
                self._at[n].setdefault(tuple(p[i - n:i]), []).append(i)
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.inner)

    def sync(self, tokens: Sequence[int]) -> None:
        self.inner.sync(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        self.inner.extend(tokens)

    def append(self, token: int) -> None:
        self.inner.append(token)

    def propose(self, limit: int) -> tuple[list[int], int]:
        """As PromptLookupDrafter.propose; a match in the prediction reports PREDICTED + its n-gram length."""
        toks = self.inner._tokens
        if limit > 0:
            for n in range(min(self.ngram_max, len(toks)), 0, -1):
                positions = self._at[n].get(tuple(toks[-n:]))
                if not positions:
                    continue
                k = bisect.bisect_left(positions, self._cursor)
                pos = positions[k] if k < len(positions) else positions[-1]
                draft = self.prediction[pos:pos + limit]
                if draft:
                    self._cursor = pos
                    return draft, PREDICTED + n
        return self.inner.propose(limit)
