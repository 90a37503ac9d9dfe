"""Request bodies, after OpenAI's (field order included), and their conversion to engine requests.

Unknown fields are refused by name (extra="forbid"); OpenAI fields Lantern does not support yet are
listed in UNSUPPORTED and refused by name when they ask for anything: never silently ignored.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from app.server.request_parts import (ChatMessage, Prediction, RequestModel, StreamOptions, ToolDef, UnsupportedField,
                                      response_schema)
from app.server.tool_checks import check_messages, check_tools, tool_choice
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

MAX_STOP = 4  # OpenAI's limit


class _Sampling(RequestModel):
    """The sampling fields both endpoints share; top_k, min_p and repeat_penalty are Lantern's additions."""

    model: str = ""  # left out: the loaded model
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
    # Sent by habit by clients of llama.cpp's server and Ollama, asking for nothing Lantern lacks: every prompt's
    # prefix is reused anyway, and a model stays loaded until another is asked for (or --idle-unload)
    cache_prompt: bool | None = None
    keep_alive: str | int | float | None = None
    n_probs: int | None = Field(None, ge=0, le=0)  # 0 only: token probabilities are not supported yet

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
            logit_bias=self._logit_bias(),
        )

    def _logit_bias(self) -> tuple[tuple[int, float], ...]:
        """OpenAI's {"token id": bias}; the ids are checked against the model's vocabulary by the engine."""
        out = []
        for key, bias in (self.logit_bias or {}).items():
            if not (key.isascii() and key.isdigit() and len(key) < 10):
                raise UnsupportedField("logit_bias", f"logit_bias keys are token ids, got {key!r}")
            if not (math.isfinite(bias) and -100 <= bias <= 100):
                raise UnsupportedField("logit_bias", f"a bias must lie between -100 and 100, got {bias!r}")
            out.append((int(key), float(bias)))
        if len(out) > 1024:
            raise UnsupportedField("logit_bias", "at most 1024 tokens may be biased")
        return tuple(out)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP:
            raise UnsupportedField("stop", f"at most {MAX_STOP} stop sequences are allowed")
        if any(not s for s in stops):
            raise UnsupportedField("stop", "stop sequences must not be empty")
        return stops

    def check_common(self) -> None:
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
    prediction: Prediction | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    response_format: dict[str, Any] | None = None
    service_tier: str | None = None
    store: bool | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    top_logprobs: int | None = None
    web_search_options: Any = None
    chat_template_kwargs: dict[str, Any] | None = None  # as vLLM and llama.cpp's server: {"enable_thinking": false}

    def to_engine(self) -> GenerationRequest:
        self.check_common()
        for name in ("audio", "function_call", "functions", "metadata", "web_search_options"):
            if getattr(self, name) is not None:
                raise UnsupportedField(name, f"{name} is not supported yet")
        if self.top_logprobs is not None and not (self.logprobs and 0 <= self.top_logprobs <= 20):
            raise UnsupportedField("top_logprobs", "top_logprobs takes 0 to 20, with logprobs: true")
        if self.store:
            raise UnsupportedField("store", "Lantern does not store completions")
        if self.modalities not in (None, ["text"]):
            raise UnsupportedField("modalities", "only text output is supported")
        json_schema = response_schema(self.response_format)
        if self.service_tier not in (None, "auto", "default"):
            raise UnsupportedField("service_tier", "Lantern has one service tier")
        if self.max_tokens is not None and self.max_completion_tokens is not None \
                and self.max_tokens != self.max_completion_tokens:
            raise UnsupportedField("max_completion_tokens", "max_tokens and max_completion_tokens disagree")
        tools = check_tools(self.tools or [])
        choice, name = tool_choice(self.tool_choice, tools)
        messages = check_messages(self.messages)
        options = dict(self.chat_template_kwargs or {})
        bad = [k for k in options if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise UnsupportedField("chat_template_kwargs", f"{bad[0]!r} is not a template variable name")
        if self.reasoning_effort is not None:
            options["reasoning_effort"] = self.reasoning_effort
            if self.reasoning_effort == "none":
                options.setdefault("enable_thinking", False)
        return GenerationRequest(messages=messages, sampling=self.sampling(),
                                 max_tokens=self.max_completion_tokens or self.max_tokens, stop=self.stops(),
                                 ignore_eos=self.ignore_eos, tools=tuple(tools), tool_choice=choice, tool_name=name,
                                 parallel_tool_calls=self.parallel_tool_calls is not False, json_schema=json_schema,
                                 template_options=options,
                                 prediction=self.prediction.text() if self.prediction else None,
                                 logprobs=(self.top_logprobs or 0) if self.logprobs else None)


class CompletionRequest(_Sampling):
    prompt: str | list[int] | list[str] | list[list[int]]  # text or token ids; a batch of one
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
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise UnsupportedField("logprobs", "logprobs takes 0 to 20 (the likeliest tokens given with each)")
        if self.suffix:
            raise UnsupportedField("suffix", "suffix (fill-in-the-middle) is not supported yet")
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            if len(prompt) != 1:
                raise UnsupportedField("prompt", "give one prompt (a batch of prompts is not supported)")
            prompt = prompt[0]
        if not prompt:
            raise UnsupportedField("prompt", "the prompt is empty")
        if isinstance(prompt, list) and any(not 0 <= t < 2 ** 31 for t in prompt):
            raise UnsupportedField("prompt", "token ids are 0 or more")
        # OpenAI's legacy completions default to 16 tokens
        return GenerationRequest(prompt=prompt, sampling=self.sampling(), max_tokens=self.max_tokens or 16,
                                 stop=self.stops(), ignore_eos=self.ignore_eos, logprobs=self.logprobs)
