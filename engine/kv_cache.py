"""The engine's KV cache: brought to the longest usable prefix of each prompt (from the live cache or a saved state),
saved before much of it is discarded, checkpointed where it cannot be cut back (recurrent and sliding-window layers),
and the last logits of recent prompts kept (a mixin of engine.engine.Engine, kept apart for size)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from basics.errors import LanternError
from engine.state_cache import common_prefix_len
from runtimes.vision import image_start

# Discarding at least this many cached tokens first saves them, so the conversation can come back.
SAVE_WHEN_DISCARDING = 64
# Restoring a saved state must win at least this many tokens over the live cache.
RESTORE_WHEN_GAINING = 16
# The last-position logits of this many recent prompts are kept, so a fully cached prompt reuses them
# instead of recomputing its last token in a batch of another size (which can change a near tie).
PROMPT_LOGITS_KEPT = 16


class CacheMixin:
    """Needs the engine's runtime, states, _tokens, _pending and _prompt_logits."""

    def _reuse_cache(self, prompt: list[int]) -> tuple[int, int]:
        """Bring the KV cache to the longest usable prefix of `prompt`. Returns (reused, restored)."""
        rt = self.runtime
        n_common = common_prefix_len(self._tokens, prompt)
        if not rt.can_truncate and n_common < len(self._tokens):
            n_common = 0  # a recurrent state cannot be cut back: the live cache serves only prompts that extend it
        restored = 0
        gain = RESTORE_WHEN_GAINING if rt.can_truncate else 0  # a state that cannot be cut back: any gain counts
        usable = None
        if not rt.can_truncate or getattr(rt, "sliding_window", 0):
            usable = self._whole_state(prompt)  # a saved state is used only where it needs no cutting back
        match = self.states.best_match(prompt, better_than=n_common + gain, usable=usable)
        saved = None
        if match is not None:
            try:  # read it before saving the current state can push it out of the budget
                saved = self.states.load(match[1])
            except OSError:
                match = None  # a spilled state that is gone from disk: compute instead
        if match is not None or len(self._tokens) - n_common >= SAVE_WHEN_DISCARDING:
            self._save_current()
        if match is not None:
            n_match, entry = match
            try:
                rt.restore_state(saved, len(entry.tokens))
                self._tokens, n_common, restored = list(entry.tokens), n_match, n_match
            except LanternError:
                self._tokens = []  # the cache was reset; compute from scratch
                n_common = 0
        self._pending = []
        n_keep = image_start(prompt, min(n_common, len(prompt) - 1))  # at least one token is fed, for fresh logits...
        if n_common >= len(prompt) and tuple(prompt) in self._prompt_logits:
            n_keep = len(prompt)  # ...unless this very prompt's logits were kept
        if not rt.truncate(n_keep):
            rt.reset()
            n_keep = 0
        del self._tokens[n_keep:]
        return n_keep, min(restored, n_keep)

    def _whole_state(self, prompt: list[int]):
        """For caches that cannot be cut back (recurrent layers; a restored sliding window): a saved state serves
        `prompt` only when it is all a prefix of it, and shorter (or this prompt's last logits are kept)."""
        key = tuple(prompt)
        window = getattr(self.runtime, "sliding_window", 0) if self.runtime.can_truncate else 0

        def usable(tokens: tuple[int, ...], n_match: int) -> bool:
            if window and len(tokens) <= window:
                return True  # the whole state is inside the window: a restored one can be cut like a live one
            return n_match == len(tokens) and (n_match < len(prompt) or key in self._prompt_logits)

        return usable

    def _needs_checkpoints(self, n_tokens: int) -> bool:
        """Whether a state of n_tokens, once saved, can only be restored whole: recurrent layers, or sliding-window
        layers whose window it outgrew."""
        window = getattr(self.runtime, "sliding_window", 0)
        return not self.runtime.can_truncate or bool(window and n_tokens > window)

    def _checkpoint(self, prompt: list[int]) -> None:
        """Save the state at the prompt's end when the cache cannot be cut back (recurrent layers), so a regenerate,
        an edit after this point or a switch back restores it instead of computing everything again."""
        try:
            self.states.put(prompt, self.runtime.save_state(), keep_prefixes=True)  # the earlier ones stay useful
        except LanternError:
            pass  # a checkpoint is an optimisation: without it the prompt is computed again

    def _prompt_logits_for(self, prompt: tuple[int, ...], computed: np.ndarray | None) -> np.ndarray:
        """The prompt's last-position logits: the ones just computed (kept for next time), or the kept ones."""
        if computed is None:
            self._prompt_logits.move_to_end(prompt)
            return self._prompt_logits[prompt]
        self._prompt_logits[prompt] = computed
        self._prompt_logits.move_to_end(prompt)
        while len(self._prompt_logits) > PROMPT_LOGITS_KEPT:
            self._prompt_logits.popitem(last=False)
        return computed

    def _save_current(self) -> None:
        if len(self._tokens) >= SAVE_WHEN_DISCARDING:
            self.states.put(self._tokens, self.runtime.save_state(),
                            keep_prefixes=self._needs_checkpoints(len(self._tokens)))

    def adopt_cache(self, tokens: Sequence[int]) -> None:
        """The runtime's cache was given `tokens` from elsewhere (another slot's shared prefix): they count as
        cached."""
        self._tokens, self._pending = list(tokens), []

    def forget_cache(self) -> None:
        """Drop the live KV cache (the saved states stay)."""
        self.runtime.reset()
        self._tokens, self._pending = [], []
