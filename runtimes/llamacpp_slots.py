"""Several KV sequences ("slots") in one llama.cpp context: each conversation keeps its own positions, and one
decode computes a batch whose rows belong to different sequences (continuous batching's step). The cache is unified:
the slots share all n_ctx cells instead of a fixed slice each.

A mixin of runtimes.llamacpp.LlamaCppRuntime (it owns the context, `_past` per sequence, and `_mem`). Every input is
checked here, before llama.cpp sees it: a bad sequence id or position would reach a GGML assertion there.
"""
from __future__ import annotations

import ctypes
from collections import Counter
from typing import Sequence

import numpy as np

from basics.errors import ContextFullError, InvalidRequestError
from runtimes.llama_library import RuntimeFailure, last_error
from runtimes.runtime import check_forward_seqs


class SlotsMixin:
    def seq_past(self, seq: int) -> int:
        """How many tokens sequence `seq` holds."""
        self._check_seq(seq)
        return self._past[seq]

    def _check_seq(self, seq: int) -> None:
        if not (isinstance(seq, (int, np.integer)) and not isinstance(seq, bool) and 0 <= seq < len(self._past)):
            raise InvalidRequestError(f"Sequence {seq!r} is not one of this context's {len(self._past)} slots.")

    def _check_room(self, new: int) -> None:
        """The slots share the context's cells: `new` more tokens must fit beside every slot's."""
        used = self.cells_used()
        if used + new > self.n_ctx:
            raise ContextFullError(f"{new} more tokens do not fit: the slots hold {used} of the context's "
                                      f"{self.n_ctx} tokens.")

    def cells_used(self, *, without: int | None = None) -> int:
        """The context's cells the slots hold (those of sequence `without` left out): a prefix copied from one slot
        to another is one set of cells until either cuts it back, so it counts once."""
        seqs = [s for s in range(len(self._past)) if s != without and self._past[s]]
        shared = self._shared  # (a, b) with a < b: their first n cells are the same
        # Between these positions who holds a cell and who shares it does not change.
        points = sorted({0} | {self._past[s] for s in seqs} | {n for (a, b), n in shared.items()
                                                                if a in seqs and b in seqs})
        used = 0
        for lo, hi in zip(points, points[1:]):
            holders = [s for s in seqs if self._past[s] >= hi]
            group = {s: s for s in holders}  # holders of one shared cell are one group (union-find)

            def root(s: int) -> int:
                while group[s] != s:
                    s = group[s]
                return s
            for (a, b), n in shared.items():
                if n >= hi and a in group and b in group:
                    group[root(a)] = root(b)
            used += (hi - lo) * len({root(s) for s in holders})
        return used

    def _unshare(self, seq: int, n_keep: int) -> None:
        """Sequence `seq` now holds only its first `n_keep` positions: it shares no cell beyond them."""
        shared = self._shared
        for pair, n in list(shared.items()):
            if seq in pair:
                if min(n, n_keep):
                    shared[pair] = min(n, n_keep)
                else:
                    del shared[pair]

    def forward_seqs(self, items: Sequence[tuple[int, Sequence[int], Sequence[int] | None]]) -> list[np.ndarray]:
        """One step for several sequences at once: for each (seq, tokens, rows), `tokens` are appended to `seq` at its
        end, and the logits of `rows` (indices into tokens; None: the last) come back, an array per item, in order.

        Sequences are distinct within a call. A failure takes every sequence back to where it was (one with recurrent
        layers keeps the decodes it completed: its state cannot go back over them)."""
        flat: list[tuple[int, int, int, int | None]] = []  # (seq, token, position, output index)
        outputs, lengths = [], []
        total = 0
        for seq, tokens, rows in check_forward_seqs(self, items):
            lengths.append(len(tokens))
            wanted = {r: total + i for i, r in enumerate(rows)}
            total += len(rows)
            outputs.append(len(rows))
            start = self._past[seq]
            flat += [(seq, t, start + j, wanted.get(j)) for j, t in enumerate(tokens)]
        self._check_room(len(flat))
        out = np.empty((total, self.n_vocab), dtype=np.float32)
        before = list(self._past)
        try:
            for chunk in _chunks(flat, lengths, self.n_batch):
                self._decode_rows(chunk)
                read = Counter(seq for seq, _t, _p, _i in chunk)
                for seq, n in read.items():
                    self._last_read[seq] = n
                for i, (seq, _t, pos, index) in enumerate(chunk):
                    if index is not None:
                        ptr = self._C.llama_get_logits_ith(self._ctx, i)
                        ctypes.memmove(out[index].ctypes.data, ptr, self.n_vocab * 4)
                    self._past[seq] = pos + 1
        except BaseException:
            for seq, n in enumerate(before):  # cache and counts in step, whatever happened
                if self._past[seq] == n:
                    continue
                if self.can_truncate:
                    self._C.llama_memory_seq_rm(self._mem, seq, n, -1)
                    self._past[seq] = n
                else:  # a recurrent state cannot go back over a whole decode: it keeps the chunks it computed
                    self._C.llama_memory_seq_rm(self._mem, seq, self._past[seq], -1)
            raise
        split, at = [], 0
        for n in outputs:
            split.append(out[at:at + n])
            at += n
        return split

    def _decode_rows(self, rows: list[tuple[int, int, int, int | None]]) -> None:
        b = self._batch
        for j, (seq, token, pos, index) in enumerate(rows):
            b.token[j] = token
            b.pos[j] = pos
            b.n_seq_id[j] = 1
            b.seq_id[j][0] = seq
            b.logits[j] = index is not None
        b.n_tokens = len(rows)
        self._follow_load(self._ctx)
        rc = self._C.llama_decode(self._ctx, b)
        if rc != 0:
            raise RuntimeFailure(f"llama.cpp failed to process the tokens (code {rc}): {last_error()}")

    def truncate_seq(self, seq: int, n_keep: int) -> bool:
        """Drop sequence `seq` from `n_keep` on; False (and nothing dropped) where that cannot be done exactly."""
        self._check_seq(seq)
        if n_keep < 0:
            raise InvalidRequestError("truncate() needs n_keep >= 0.")
        if n_keep >= self._past[seq]:
            return True
        if not self.can_truncate and n_keep > 0:
            back = self._past[seq] - n_keep
            if back > min(self.rollback_tokens, self._last_read[seq] - 1):
                return False  # beyond the snapshots of the last decode (see _last_read)
            if not self._C.llama_memory_seq_rm(self._mem, seq, n_keep, -1):
                return False
            self._past[seq] = n_keep
            self._last_read[seq] = 0  # one rollback a decode (llama.cpp's snapshot index is single-use)
            return True
        if self.sliding_window and n_keep > 0:
            # A restored state holds only the last window of the sliding layers: the token at n_keep must still see
            # the window before it, or the reply would come from a wrong cache.
            low = int(self._C.llama_memory_seq_pos_min(self._mem, seq))
            if low > max(0, n_keep - self.sliding_window):
                return False
        if not self._C.llama_memory_seq_rm(self._mem, seq, n_keep, -1):
            return False
        self._past[seq] = n_keep
        self._unshare(seq, n_keep)
        return True

    def clear_seq(self, seq: int) -> None:
        self._check_seq(seq)
        self._C.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self._past[seq] = 0
        self._last_read[seq] = 0
        self._unshare(seq, 0)

    def copy_seq(self, src: int, dst: int, n_tokens: int) -> None:
        """Make `dst` hold the first `n_tokens` of `src` (a shared system prompt or tool list, computed once). The
        cells are shared, not copied: no memory is taken until the two sequences differ."""
        self._check_seq(src)
        self._check_seq(dst)
        if not self.can_truncate:
            # A recurrent state holds its sequence's end only, never a prefix; and llama.cpp would share one state
            # between two sequences whose rollback snapshots then differ (it aborts on saving such a state).
            raise InvalidRequestError("A model with recurrent layers cannot share a prefix between slots.")
        if src == dst or not 0 < n_tokens <= self._past[src]:
            raise InvalidRequestError(f"copy_seq() copies 1 to {self._past[src]} tokens to another sequence.")
        if self.sliding_window and n_tokens < self._past[src]:
            low = int(self._C.llama_memory_seq_pos_min(self._mem, src))
            if low > max(0, n_tokens - self.sliding_window):
                raise InvalidRequestError("The window of that prefix is no longer in the cache.")
        self.clear_seq(dst)
        self._C.llama_memory_seq_cp(self._mem, src, dst, 0, n_tokens)
        self._past[dst] = n_tokens
        shared = self._shared
        for other in range(len(self._past)):  # dst shares what src shares with others, as far as it copied
            n = n_tokens if other == src else min(n_tokens, shared.get((min(src, other), max(src, other)), 0))
            if other != dst and n:
                shared[(min(dst, other), max(dst, other))] = n

    def save_seq(self, seq: int) -> bytearray:
        self._check_seq(seq)
        size = int(self._C.llama_state_seq_get_size(self._ctx, seq))
        buf = bytearray(size)
        written = self._C.llama_state_seq_get_data(self._ctx, (ctypes.c_uint8 * size).from_buffer(buf), size, seq)
        if written != size:
            raise RuntimeFailure("llama.cpp could not save the KV state.")
        return buf  # bytes-like; copying a state of 100 MB again would buy nothing

    def mark_recurrent(self) -> bytearray:
        """The recurrent layers' state of sequence 0 as it is now (llama.cpp's PARTIAL_ONLY state: a few MB, not the
        attention cache), for back_to_mark: how a recurrent draft model takes back tokens it read one pass at a
        time, which llama.cpp's rollback snapshots (one decode's last tokens) cannot."""
        C, flags = self._C, self._C.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        size = int(C.llama_state_seq_get_size_ext(self._ctx, 0, flags))
        buf = bytearray(size)
        written = C.llama_state_seq_get_data_ext(self._ctx, (ctypes.c_uint8 * size).from_buffer(buf), size, 0, flags)
        if written != size:
            raise RuntimeFailure("llama.cpp could not save the recurrent state.")
        return buf

    def back_to_mark(self, mark: bytearray, n_keep: int) -> None:
        """Sequence 0 as it was when `mark` was taken at `n_keep` tokens: the recurrent state put back, the attention
        layers' cells from n_keep on dropped."""
        C = self._C
        if not C.llama_state_seq_set_data_ext(self._ctx, (ctypes.c_uint8 * len(mark)).from_buffer(mark), len(mark),
                                              0, C.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY):
            raise RuntimeFailure("llama.cpp could not put the recurrent state back.")
        if not C.llama_memory_seq_rm(self._mem, 0, n_keep, -1) or \
                int(C.llama_memory_seq_pos_max(self._mem, 0)) + 1 != n_keep:
            raise RuntimeFailure("The cache could not be taken back to the recurrent state's mark.")
        self._past[0] = n_keep
        self._last_read[0] = 0

    def restore_seq(self, seq: int, data: bytes, n_tokens: int) -> None:
        """Put a saved state back into sequence `seq` (the other sequences keep theirs)."""
        self._check_seq(seq)
        if not 0 < n_tokens <= self.n_ctx:
            raise InvalidRequestError(f"A saved state of {n_tokens} tokens does not fit the context of {self.n_ctx}.")
        self.clear_seq(seq)
        self._check_room(n_tokens)
        if isinstance(data, bytearray):
            src = (ctypes.c_uint8 * len(data)).from_buffer(data)
        else:
            src = ctypes.cast(ctypes.c_char_p(bytes(data)), ctypes.POINTER(ctypes.c_uint8))
        if not self._C.llama_state_seq_set_data(self._ctx, src, len(data), seq):
            self.clear_seq(seq)
            raise RuntimeFailure("llama.cpp could not restore the saved KV state.")
        if int(self._C.llama_memory_seq_pos_max(self._mem, seq)) + 1 != n_tokens:
            self.clear_seq(seq)
            raise RuntimeFailure("The restored KV state does not hold the expected number of tokens.")
        self._past[seq] = n_tokens


def _chunks(flat: list, lengths: list[int], n_batch: int):
    """`flat`'s rows in decodes of at most n_batch (a GGML_ASSERT beyond), never splitting an item that fits in one:
    a draft read across two decodes could not be rolled back on a recurrent model (llama.cpp keeps the snapshots of
    one decode's last tokens only). Longer items (prompt chunks) are split."""
    chunk: list = []
    at = 0
    for n in lengths:
        rows = flat[at:at + n]
        at += n
        if chunk and len(chunk) + n > n_batch and n <= n_batch:
            yield chunk
            chunk = []
        while len(chunk) + len(rows) > n_batch:
            room = n_batch - len(chunk)
            yield chunk + rows[:room]
            chunk, rows = [], rows[room:]
        chunk += rows
    if chunk:
        yield chunk
