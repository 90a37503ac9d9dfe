"""Prompt-lookup drafting: propose the next tokens by finding the latest n-gram in the context.

The index is updated as tokens arrive (a few dict writes per token), never rebuilt by a scan of the
whole context per step, unlike llama-cpp-python's LlamaPromptLookupDecoding.
"""
from __future__ import annotations

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
                return toks[pos:pos + limit], n
        return [], 0
