"""A remote OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, another Lantern) as a backend.

It has no token-level access, so it stands in for the whole engine rather than for a runtime: the
same `generate(request, cancel=) -> events` face, fed by a streamed chat or text completion. The
server does its own KV reuse; its figures (cached tokens included, when it reports them) come back.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

from basics.errors import InvalidRequestError, LanternError, ModelLoadError
from chat_format.chat_template import parse_messages
from engine.events import Event, Finished, GenerationRequest, GenerationStats, TextDelta


class RemoteError(LanternError):
    """The remote server failed or could not be reached."""


class RemoteEngine:
    """Streams requests to `base_url` (…/v1) with the official openai client."""

    def __init__(self, base_url: str, *, api_key: str | None = None, model: str | None = None, timeout: float = 600):
        # deferred: openai (~400 ms to import), only for a remote server
        import openai

        if not base_url.startswith(("http://", "https://")):
            raise ModelLoadError(f"The remote URL must start with http:// or https://, got {base_url!r}.")
        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url.rstrip("/"), api_key=api_key or "none", timeout=timeout,
                                     max_retries=2)
        try:
            models = [m.id for m in self._client.models.list().data]
        except openai.AuthenticationError:
            raise ModelLoadError(f"{base_url} refused the API key (set it with --remote-key).") from None
        except openai.APIError as e:
            raise ModelLoadError(f"Cannot reach the server at {base_url}: {e}") from None
        if model is None:
            if not models:
                raise ModelLoadError(f"{base_url} serves no models.")
            model = models[0]
        elif models and model not in models:
            raise ModelLoadError(f"{base_url} has no model {model!r}; it serves {', '.join(models)}.")
        self.model = model
        self.backend = f"remote ({base_url})"
        self.backend_reason = f"you chose a remote server: {model} at {base_url}"
        # Lantern's KV reuse, conversation switching and prompt lookup do not reach another server: its prompt cache
        # is its own, and the prompt tokens reused are the figure it reports (0 where it reports none)
        self.notes: list[str] = [f"{base_url} keeps its own prompt cache: the prompt tokens reused are its figures "
                                 "(vLLM reports them with --enable-prompt-tokens-details), 0 where it reports none."]

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Iterator[Event]:
        t0 = time.perf_counter()
        if (request.messages is None) == (request.prompt is None):
            raise InvalidRequestError("Give either chat messages or a raw prompt, not both or neither.")
        for field, given in (("tools", request.tools), ("response_format", request.json_schema is not None),
                             ("prediction", request.prediction), ("chat_template_kwargs", request.template_options),
                             ("logprobs", request.logprobs is not None)):
            if given:
                raise InvalidRequestError(f"A remote model does not take {field} yet.", param=field)
        s = request.sampling
        s.validate()
        args = dict(model=self.model, stream=True, stream_options={"include_usage": True}, temperature=s.temperature,
                    top_p=s.top_p, presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty,
                    max_tokens=request.max_tokens, stop=list(request.stop) or None, seed=s.seed,
                    logit_bias={str(t): b for t, b in s.logit_bias} or None)  # the remote's token ids
        try:
            if request.messages is not None:
                messages = [{"role": m.role, "content": m.content} for m in parse_messages(request.messages)]
                stream = self._client.chat.completions.create(messages=messages, **args)
            else:
                stream = self._client.completions.create(
                    prompt=request.prompt if isinstance(request.prompt, str) else list(request.prompt), **args)
        except self._openai.BadRequestError as e:
            raise InvalidRequestError(f"The remote server refused the request: {_message(e)}") from None
        except self._openai.APIError as e:
            raise RemoteError(f"The remote server failed: {_message(e)}") from None
        return self._events(stream, cancel or threading.Event(), t0)

    def _events(self, stream, cancel: threading.Event, t0: float) -> Iterator[Event]:
        t_first, usage, reason, n = None, None, None, 0
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text = getattr(choice, "text", None) or (choice.delta.content if hasattr(choice, "delta") else "")
                    if text:
                        t_first = t_first or time.perf_counter()
                        n += 1
                        yield TextDelta(text, ())
                    if choice.finish_reason:
                        reason = "stop" if choice.finish_reason == "stop" else "length"
                if cancel.is_set():
                    reason = "cancelled"
                    break
        except self._openai.APIError as e:
            yield Finished("error", self._stats(usage, t0, t_first, n), error=f"The remote server failed: {e}")
            return
        finally:
            stream.close()  # closing the connection is how the server learns to stop
        if reason is None:  # no finish reason: the server gave up or the connection was cut
            yield Finished("error", self._stats(usage, t0, t_first, n),
                           error="The remote server ended the reply without finishing it.")
            return
        yield Finished(reason, self._stats(usage, t0, t_first, n))

    def _stats(self, usage, t0: float, t_first: float | None, chunks: int) -> GenerationStats:
        now = time.perf_counter()
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        cached = (getattr(details, "cached_tokens", None) or 0) if details else 0
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else chunks
        decode_s = now - t_first if t_first else 0.0
        return GenerationStats(
            prompt_tokens=prompt, cached_tokens=cached, restored_tokens=0, prefill_tokens=prompt - cached,
            prefill_ms=((t_first or now) - t0) * 1000, ttft_ms=((t_first or now) - t0) * 1000,
            completion_tokens=completion, decode_tokens_per_s=(completion - 1) / decode_s if decode_s else 0.0,
            total_ms=(now - t0) * 1000, backend=self.backend, backend_reason=self.backend_reason,
        )

    def close(self) -> None:
        self._client.close()


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(e)
