"""What a generation yields: small values, as in mlx-lm's stream_generate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from backends.chat_template import Message
from backends.sampling import SamplingParams

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class GenerationRequest:
    """One reply to produce: from chat `messages` or a raw `prompt` (exactly one of them).

    `max_tokens=None` runs until an end token or the end of the context window.
    `drop_oldest_turns` lets a chat that outgrew the context lose its oldest turns
    (the system prompt stays) instead of failing.
    """

    messages: Sequence[Message | dict] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = 512
    stop: Sequence[str] = ()
    drop_oldest_turns: bool = False
    prompt_lookup: bool | None = None  # None: the engine's setting
    ignore_eos: bool = False  # go on past end-of-turn tokens (benchmarks and tests that need a long reply)


@dataclass(frozen=True)
class TextDelta:
    """New text to show, and the token ids that produced it (ids may arrive before their text)."""

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int  # prompt tokens reused from the KV cache (live or restored)
    restored_tokens: int  # of those, how many came back from a saved conversation state
    prefill_tokens: int
    prefill_ms: float
    ttft_ms: float
    completion_tokens: int
    decode_tokens_per_s: float
    total_ms: float
    dropped_messages: int = 0
    drafted_tokens: int = 0  # prompt lookup: tokens proposed for verification
    accepted_tokens: int = 0  # of those, how many the model agreed with
    tokens_per_forward: float = 0.0  # reply tokens per forward pass of the model
    backend: str = ""  # "llamacpp" or "mlx", and where: "llamacpp (CPU)"
    backend_reason: str = ""  # why Lantern chose it (models/choice.py)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    stats: GenerationStats
    error: str | None = None


Event = TextDelta | Finished
