"""Request bodies, after OpenAI's (field order included), and their conversion to engine requests.

Unknown fields are refused by name (extra="forbid"); OpenAI fields Lantern does not support yet are
listed in UNSUPPORTED and refused by name when they ask for anything: never silently ignored.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backends.events import GenerationRequest
from backends.runtime import InvalidRequestError
from backends.sampling import SamplingParams

MAX_STOP = 4  # OpenAI's limit


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def find_invalid_text(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone surrogate (JSON's "\ud800": not Unicode), or None."""
    stack = [(value, path)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body"
        elif isinstance(v, dict):
            for k, item in v.items():
                if find_invalid_text(k) is not None:
                    return f"{where}.{k!r}".lstrip(".")
                stack.append((item, f"{where}.{k}".lstrip(".")))
        elif isinstance(v, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))
    return None


class _Request(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = find_invalid_text(data)
        if where is not None:
            raise InvalidText(where)
        return data


class InvalidText(ValueError):
    def __init__(self, param: str):
        super().__init__(f"{param} is not valid Unicode (a lone surrogate such as \\ud800).")
        self.param = param


class StreamOptions(_Strict):
    include_usage: bool = False


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | dict[str, Any]]  # other parts (images, audio) are refused by name


class _Sampling(_Request):
    """The sampling fields both endpoints share; top_k, min_p and repeat_penalty are Lantern's additions."""

    model: str
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-(2 ** 63), lt=2 ** 64)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None  # an end-user id for abuse monitoring: it changes nothing in the reply
    top_k: int | None = Field(None, ge=0, le=1000)
    min_p: float | None = Field(None, ge=0, lt=1)
    repeat_penalty: float | None = Field(None, gt=0, le=10)
    ignore_eos: bool = False  # as llama.cpp's server: generate to max_tokens (benchmarks)

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,  # OpenAI's defaults
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=self.top_k or 0,
            min_p=self.min_p or 0.0,
            repeat_penalty=self.repeat_penalty or 1.0,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            seed=None if self.seed is None else self.seed % (2 ** 32),
        )

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP:
            raise UnsupportedField("stop", f"at most {MAX_STOP} stop sequences are allowed")
        if any(not s for s in stops):
            raise UnsupportedField("stop", "stop sequences must not be empty")
        return stops

    def check_common(self) -> None:
        if self.n not in (None, 1):
            raise UnsupportedField("n", "only n = 1 is supported")
        if self.logit_bias:
            raise UnsupportedField("logit_bias", "logit_bias is not supported yet")
        if self.stream_options is not None and not self.stream:
            raise UnsupportedField("stream_options", "stream_options needs stream: true")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    audio: Any = None
    function_call: Any = None
    functions: Any = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    metadata: Any = None
    modalities: list[str] | None = None
    parallel_tool_calls: bool | None = None
    prediction: Any = None
    reasoning_effort: Any = None
    response_format: dict[str, Any] | None = None
    service_tier: str | None = None
    store: bool | None = None
    tool_choice: Any = None
    tools: Any = None
    top_logprobs: int | None = None
    web_search_options: Any = None

    def to_engine(self) -> GenerationRequest:
        self.check_common()
        for name in ("audio", "function_call", "functions", "metadata", "prediction", "reasoning_effort", "tools",
                     "tool_choice", "top_logprobs", "web_search_options"):
            if getattr(self, name) is not None:
                raise UnsupportedField(name, f"{name} is not supported yet")
        if self.logprobs:
            raise UnsupportedField("logprobs", "logprobs are not supported yet")
        if self.store:
            raise UnsupportedField("store", "Lantern does not store completions")
        if self.modalities not in (None, ["text"]):
            raise UnsupportedField("modalities", "only text output is supported")
        if self.response_format not in (None, {"type": "text"}):
            raise UnsupportedField("response_format", "only text responses are supported yet (no JSON mode)")
        if self.service_tier not in (None, "auto", "default"):
            raise UnsupportedField("service_tier", "Lantern has one service tier")
        if self.max_tokens is not None and self.max_completion_tokens is not None \
                and self.max_tokens != self.max_completion_tokens:
            raise UnsupportedField("max_completion_tokens", "max_tokens and max_completion_tokens disagree")
        messages = []
        for i, m in enumerate(self.messages):
            content = m.content
            if isinstance(content, list):
                for part in content:
                    if not isinstance(part, TextPart):
                        raise UnsupportedField(f"messages[{i}].content",
                                               f"{part.get('type')!r} parts are not supported: only text")
                content = [{"type": "text", "text": p.text} for p in content]
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": content})
        return GenerationRequest(messages=messages, sampling=self.sampling(),
                                 max_tokens=self.max_completion_tokens or self.max_tokens, stop=self.stops(),
                                 ignore_eos=self.ignore_eos)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    best_of: int | None = None
    echo: bool | None = None
    logprobs: int | None = None
    suffix: str | None = None

    def to_engine(self) -> GenerationRequest:
        self.check_common()
        if self.best_of not in (None, 1):
            raise UnsupportedField("best_of", "only best_of = 1 is supported")
        if self.echo:
            raise UnsupportedField("echo", "echo is not supported yet")
        if self.logprobs is not None:
            raise UnsupportedField("logprobs", "logprobs are not supported yet")
        if self.suffix:
            raise UnsupportedField("suffix", "suffix (fill-in-the-middle) is not supported yet")
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise UnsupportedField("prompt", "give one prompt (a batch of prompts is not supported)")
            prompt = prompt[0]
        if not prompt:
            raise UnsupportedField("prompt", "the prompt is empty")
        # OpenAI's legacy completions default to 16 tokens
        return GenerationRequest(prompt=prompt, sampling=self.sampling(), max_tokens=self.max_tokens or 16,
                                 stop=self.stops(), ignore_eos=self.ignore_eos)


class UnsupportedField(InvalidRequestError):
    """A request field with a value Lantern cannot honour; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
