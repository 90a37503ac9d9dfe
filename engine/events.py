"""What a generation yields: small values, as in mlx-lm's stream_generate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

from chat_format.chat_template import Message, ToolCall
from chat_format.reply import CallDelta
from chat_format.tool_formats import Tool
from engine.sampling import SamplingParams

FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]


@dataclass(frozen=True)
class GenerationRequest:
    """One reply to produce: from chat `messages` or a raw `prompt` (exactly one of them).

    `max_tokens=None` runs until an end token or the end of the context window.
    `drop_oldest_turns` lets a chat that outgrew the context lose its oldest turns
    (the system prompt stays) instead of failing.
    """

    messages: Sequence[Message | dict] | None = None
    prompt: str | Sequence[int] | None = None  # text, or token ids taken as they are (no BOS is added)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = 512
    stop: Sequence[str] = ()
    drop_oldest_turns: bool = False
    prompt_lookup: bool | None = None  # None: the engine's setting
    ignore_eos: bool = False  # go on past end-of-turn tokens (benchmarks and tests that need a long reply)
    tools: Sequence[Tool] = ()
    tool_choice: Literal["auto", "none", "required"] = "auto"
    tool_name: str | None = None  # a call to this tool is required
    parallel_tool_calls: bool = True
    json_schema: Mapping[str, Any] | None = None  # the reply is JSON valid against this schema
    template_options: Mapping[str, Any] = field(default_factory=dict)  # enable_thinking, reasoning_effort...
    prediction: str | None = None  # text the reply is expected to resemble: a source of drafts
    # The last message is an assistant's reply that was cut short (the length limit): the model goes on writing it
    # (rendered without a new turn, the prompt ending at its last word); the events carry only the new text
    continue_reply: bool = False
    # With several slots (engine/slots.py), a request of a higher priority starts first and its prompt is read
    # first: the window's chat (1) is never queued behind the endpoint's batch jobs (0). Not part of any API.
    priority: int = 0
    # Told (tokens read, of how many) after each chunk of a prompt the model reads, on the engine's thread: the
    # window shows a long paste being read. Not part of any API.
    on_prefill: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)
    # Told (prompt tokens, of them cached) once the prompt is known, before any event: Anthropic's stream opens with
    # the prompt's count (message_start). Not part of any API.
    on_prompt: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)
    # None: no log-probabilities; n: each produced token's, with the n likeliest of its distribution (TextDelta)
    logprobs: int | None = None


@dataclass(frozen=True)
class TextDelta:
    """New text to show, and the token ids that produced it (ids may arrive before their text).

    In a chat reply `text` is the answer only: thinking comes as `reasoning`, tool calls as `calls`.
    """

    text: str
    tokens: tuple[int, ...]
    reasoning: str = ""
    calls: tuple[CallDelta, ...] = ()
    logprobs: tuple = ()  # TokenLogprob of each of `tokens`, when the request asked for them


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
    predicted_tokens: int = 0  # the prediction's length in tokens
    accepted_prediction_tokens: int = 0  # drafted from the prediction and accepted
    mask_ms: float = 0.0  # constrained decoding: time spent on token masks
    reasoning_ms: float = 0.0  # from the start until the reasoning block closed
    queued_ms: float = 0.0  # from the request's arrival until its reply began (a queue, or waiting for room)
    # Drafted and accepted tokens by source ("lookup", "prediction", "draft model"): [drafted, accepted]
    drafts_by_source: Mapping[str, Sequence[int]] = field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    stats: GenerationStats
    error: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str | None = None  # the request's stop string that ended the reply, if one did


Event = TextDelta | Finished
