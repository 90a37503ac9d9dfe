"""Several KV sequences ("slots") on MLX: each conversation keeps its own mlx-lm cache, and one model call computes
the rows of several sequences (continuous batching's step), as runtimes/llamacpp_slots.py does for llama.cpp.

For that call each layer sees one batch: the sequences' keys and values stacked, left-padded to the longest and
masked (mlx-lm's BatchKVCache layout), with each row's own RoPE offset. The per-sequence caches stay the truth, so
cutting back, saving, restoring and copying one slot touch only its own arrays. Only plain KVCache layers can be
stacked this way (a sliding window's ring buffer or a recurrent state cannot): other models load with one slot.

A mixin of runtimes.mlx_runtime.MlxRuntime (it owns `_seq_caches` and `_seq_pasts`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from basics.errors import ContextFullError, InvalidRequestError, LanternError
from runtimes.runtime import check_forward_seqs

BATCH_AT_MOST = 32  # passes this short (next tokens, drafts) of equal length go in one call; longer ones alone


class MlxFailure(LanternError):
    """MLX reported an error while running the model."""


class _Rows:
    """One layer's caches of several sequences, seen by the model as one left-padded batch."""

    def __init__(self, caches: list):
        self.caches = caches
        lengths = [c.offset for c in caches]
        self.longest = max(lengths)
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        import mlx.core as mx

        self.offset = mx.array(lengths)  # each row's RoPE position
        self.left_padding = mx.array([self.longest - n for n in lengths])

    def update_and_fetch(self, keys, values):
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        import mlx.core as mx

        ks, vs = [], []
        for b, cache in enumerate(self.caches):
            pad = self.longest - cache.offset
            k, v = cache.update_and_fetch(keys[b:b + 1], values[b:b + 1])
            if pad:
                k = mx.pad(k, [(0, 0), (0, 0), (pad, 0), (0, 0)])
                v = mx.pad(v, [(0, 0), (0, 0), (pad, 0), (0, 0)])
            ks.append(k)
            vs.append(v)
        return mx.concatenate(ks), mx.concatenate(vs)

    def make_mask(self, n: int, return_array: bool = False, window_size=None, **_):
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        from mlx_lm.models.base import create_causal_mask

        # causal from each row's own start: the padding on its left is never seen
        return create_causal_mask(n, offset=self.longest, left_padding=self.left_padding, window_size=window_size)


class MlxSlotsMixin:
    slots: int

    def seq_past(self, seq: int) -> int:
        self._check_seq(seq)
        return self._seq_pasts[seq]

    def _check_seq(self, seq: int) -> None:
        if not (isinstance(seq, (int, np.integer)) and not isinstance(seq, bool) and 0 <= seq < self.slots):
            raise InvalidRequestError(f"Sequence {seq!r} is not one of this context's {self.slots} slots.")

    def cells_used(self, *, without: int | None = None) -> int:
        """Tokens the slots hold (those of `without` left out): each has its own arrays, so a copy counts again."""
        return sum(n for s, n in enumerate(self._seq_pasts) if s != without)

    def _check_room(self, new: int) -> None:
        """The slots share the context's budget: `new` more tokens must fit beside every slot's."""
        used = self.cells_used()
        if used + new > self.n_ctx:
            raise ContextFullError(f"{new} more tokens do not fit: the slots hold {used} of the context's "
                                      f"{self.n_ctx} tokens.")

    def forward_seqs(self, items: Sequence[tuple[int, Sequence[int], Sequence[int] | None]]) -> list[np.ndarray]:
        """llamacpp_slots.SlotsMixin.forward_seqs on MLX: short passes of equal length share one call."""
        items = check_forward_seqs(self, items)
        self._check_room(sum(len(tokens) for _s, tokens, _r in items))
        groups: dict[object, list[int]] = {}
        for i, (_seq, tokens, _rows) in enumerate(items):
            groups.setdefault(len(tokens) if len(tokens) <= BATCH_AT_MOST else ("alone", i), []).append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        before = list(self._seq_pasts)
        try:
            for group in groups.values():
                if len(group) == 1:
                    seq, tokens, rows = items[group[0]]
                    out[group[0]] = self._forward_seq(seq, tokens, rows)
                else:
                    for i, got in zip(group, self._forward_together([items[i] for i in group])):
                        out[i] = got
        except BaseException as e:
            for seq, n in enumerate(before):  # every layer of every slot back where it was
                self._trim_caches(self._seq_caches[seq], n)
                self._seq_pasts[seq] = n
            if isinstance(e, (RuntimeError, ValueError)):
                raise MlxFailure(f"MLX failed to process the tokens: {e}") from None
            raise
        return out

    def _forward_together(self, group: list[tuple[int, list[int], list[int]]]) -> list[np.ndarray]:
        mx = self._mx
        seqs = [seq for seq, _t, _r in group]
        layers = [_Rows([self._seq_caches[s][i] for s in seqs]) for i in range(len(self._seq_caches[seqs[0]]))]
        logits = self._model(mx.array([tokens for _s, tokens, _r in group]), cache=layers)
        picked = [logits[b][mx.array(rows)].astype(mx.float32) for b, (_s, _t, rows) in enumerate(group)]
        mx.eval(picked, [c.state for s in seqs for c in self._seq_caches[s]])
        for seq, tokens, _r in group:
            self._seq_pasts[seq] += len(tokens)
        return [np.array(p) for p in picked]

    @staticmethod
    def _trim_caches(caches: list, n: int) -> None:
        for c in caches:
            if c.offset > n:
                c.trim(c.offset - n)

    def truncate_seq(self, seq: int, n_keep: int) -> bool:
        self._check_seq(seq)
        if seq == 0:
            return self.truncate(n_keep)
        if n_keep < 0:
            raise InvalidRequestError("truncate() needs n_keep >= 0.")
        if n_keep < self._seq_pasts[seq]:
            self._trim_caches(self._seq_caches[seq], n_keep)
            self._seq_pasts[seq] = n_keep
        return True

    def clear_seq(self, seq: int) -> None:
        self._check_seq(seq)
        if seq == 0:
            self.reset()
            return
        self._seq_caches[seq] = self._make_cache(self._model)
        self._seq_pasts[seq] = 0

    def copy_seq(self, src: int, dst: int, n_tokens: int) -> None:
        """Make `dst` hold the first `n_tokens` of `src` (a shared system prompt, computed once)."""
        # deferred: MLX is optional (Apple silicon, or the dev extra's CPU wheel)
        from mlx_lm.models.cache import KVCache

        self._check_seq(src)
        self._check_seq(dst)
        if src == dst or not 0 < n_tokens <= self._seq_pasts[src]:
            raise InvalidRequestError(f"copy_seq() copies 1 to {self._seq_pasts[src]} tokens to another sequence.")
        self._check_room(n_tokens - self._seq_pasts[dst])
        copies = []
        for c in self._seq_caches[src]:
            copy = KVCache()  # slices are new arrays: writing into one slot's buffer never reaches the other's
            copy.keys, copy.values = c.keys[..., :n_tokens, :], c.values[..., :n_tokens, :]
            copy.offset = n_tokens
            copies.append(copy)
        self._mx.eval([c.state for c in copies])
        self.clear_seq(dst)
        self._seq_caches[dst] = copies
        self._seq_pasts[dst] = n_tokens

    def save_seq(self, seq: int) -> bytes:
        self._check_seq(seq)
        return self._save(self._seq_caches[seq], self._seq_pasts[seq])

    def restore_seq(self, seq: int, data: bytes, n_tokens: int) -> None:
        self._check_seq(seq)
        if seq == 0:
            self.restore_state(data, n_tokens)
            return
        if not 0 < n_tokens <= self.n_ctx:
            raise InvalidRequestError(f"A saved state of {n_tokens} tokens does not fit the context of {self.n_ctx}.")
        self.clear_seq(seq)
        self._check_room(n_tokens)
        self._seq_caches[seq] = self._load(data, n_tokens)
        self._seq_pasts[seq] = n_tokens
