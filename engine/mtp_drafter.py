"""The model's own multi-token-prediction heads as a draft source, beside prompt lookup under one policy
(engine/decoding.Lookup): what a draft model offers, without a second model. The heads' context follows the model's
batches by itself (runtimes/llama_mtp.py); this is the part the policy sees."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from engine.draft_policy import MTP


class MtpDrafter:
    """Drafts with `runtime`'s MTP heads (a llama.cpp runtime loaded with load_mtp). One thread owns it: the
    engine's."""

    source = "mtp"
    key = MTP  # its acceptance, learnt by the draft policy under this key

    def __init__(self, runtime):
        self.runtime = runtime
        self.heads = runtime.start_mtp()  # MtpUnavailable (a ModelLoadError) where it cannot
        assistant = runtime.options.mtp_assistant
        self.name = f"{runtime.model_path.name}'s MTP heads" + (f" ({Path(assistant).name})" if assistant else "")
        # A pass of the heads against one of the model, for seeded and greedy replies (nominal costs, never timing)
        self.relative_cost = self.heads.relative_cost
        self.token_seconds = self._measure()  # seconds per drafted token, learnt from every draft

    def _measure(self) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self.heads.draft([min(100, self.runtime.n_vocab - 1)], 1)
            best = min(best, time.perf_counter() - t0)
        return best

    def propose(self, context: Sequence[int], limit: int, draw=None) -> tuple[list[int], list]:
        """Up to `limit` tokens that follow `context`, and each one's distribution (None: greedy), as
        engine/draft_model.DraftModel.propose."""
        limit = min(limit, self.runtime.n_ctx - len(context))
        if limit <= 0 or not context or min(context) < 0:  # an image's positions: the heads never saw them
            return [], []
        t0 = time.perf_counter()
        tokens, dists = self.heads.draft(context, limit, draw)
        self.token_seconds += 0.2 * ((time.perf_counter() - t0) / max(1, len(tokens)) - self.token_seconds)
        return tokens, dists

    def close(self) -> None:
        pass  # the heads belong to the runtime, which closes them with the model
