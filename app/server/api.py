"""The OpenAI-compatible HTTP API: `create_app(service, settings)`, no module-level state."""
from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from app.server.admission import Started, admit, first_of, whole_reply
from app.server.choices import chat_logprobs, choice_requests, completion_logprobs
from app.server.embeddings import EmbeddingService, add_embedding_routes
from app.server.errors import APIError, error_body
from app.server.extras import Metrics, add_extra_routes
from app.server.guard import BodyDeadline, HostCheck, OnceLog, allowed_hosts
from app.server.messages import add_messages_routes, error_json, is_messages_path
from app.server.request_log import RequestLog
from app.server.request_parts import InvalidText, UnsupportedField
from app.server.responses import add_responses_routes
from app.server.schemas import ChatCompletionRequest, CompletionRequest
from app.server.service import ModelService
from basics.errors import ContextOverflowError, InvalidRequestError, LanternError
from engine.events import Finished, TextDelta
from models.facts import model_facts, registered_path


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 << 20
    max_queue: int = 16
    insecure: bool = False  # bind beyond loopback without a key (warned about)
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the bound address and loopback's names
    header_timeout_s: float = 10.0  # a request's headers must arrive within this
    body_timeout_s: float = 60.0  # and its body within this after them
    max_connections: int = 256  # open at once (lowered to what the file-descriptor limit allows)
    # A request for a model that is loading (or that waits for another model's requests to finish) waits this long
    # for it, then gets a 503 with Retry-After
    load_wait_s: float = 120.0
    # Called with each finished request's figures (the window's request log, benchmarks).
    on_finished: Callable[[dict], None] | None = field(default=None, compare=False)
    # Called with every answered request, refused ones included: time, method, path, status, figures (app.server.
    # request_log)
    on_request: Callable[[dict], None] | None = field(default=None, compare=False)
    # The embedding models by name (default: the registered models whose files say they embed)
    embedding_models: Callable[[], dict] | None = field(default=None, compare=False)


def create_app(service: ModelService, settings: ServerSettings = ServerSettings()) -> FastAPI:
    app = FastAPI(title="Lantern", version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    if settings.cors_origins:  # off unless asked for; then only those origins, never a reflected one
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    once = OnceLog()
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout_s, once=once)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(HostCheck, allowed=allowed_hosts(settings.host, settings.allowed_hosts), once=once)

    metrics = app.state.metrics = Metrics()

    def logged(entry: dict) -> None:
        metrics.request(entry)
        if settings.on_request is not None:
            settings.on_request(entry)

    app.add_middleware(RequestLog, listener=logged)  # outermost: sees every refusal
    app.state.once_log = once
    _add_error_handlers(app)
    auth = _auth(settings.api_key)

    @app.get("/health")
    async def health():
        # llama.cpp's semantics, which readiness probes rely on: 503 until a model can answer (an idle-unloaded one
        # loads on the next request, so the server is ready)
        ok = service.status in ("ready", "unloaded")
        return JSONResponse({"status": service.status, "model": service.model}, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "2"})

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def list_models() -> dict:
        # each file's header is read once (then cached by size and mtime): tens of ms at most, on the loop

        names = service.known_models()
        facts = [model_facts(n) for n in names]
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "lantern",
             "loaded": name == service.model and service.status == "ready", **fact}
            for name, fact in zip(names, facts)]}

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        return await _complete(service, body, request, chat=True, report=_reporter(settings, request),
                               wait_s=settings.load_wait_s)

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(body: CompletionRequest, request: Request):
        return await _complete(service, body, request, chat=False, report=_reporter(settings, request),
                               wait_s=settings.load_wait_s)

    add_messages_routes(app, service, auth, lambda request: _reporter(settings, request), settings.load_wait_s)
    add_responses_routes(app, service, auth, lambda request: _reporter(settings, request), settings.load_wait_s)
    add_extra_routes(app, service, auth, metrics, settings.load_wait_s)

    app.state.embeddings = EmbeddingService(settings.embedding_models or (lambda: _embedding_models(service)))
    add_embedding_routes(app, app.state.embeddings, auth, service, settings.load_wait_s)
    return app


def _embedding_models(service: ModelService) -> dict:
    return {name: registered_path(name) for name in service.known_models()
            if model_facts(name).get("kind") == "embedding"}


def _auth(key: str | None):
    async def check(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        bearer = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
        anthropic = hmac.compare_digest(request.headers.get("x-api-key", "").strip().encode(), key.encode())
        if not (bearer or anthropic):  # Anthropic's clients send the key as x-api-key
            raise APIError(401, "Invalid or missing API key: send it as 'Authorization: Bearer KEY' (or "
                           "'x-api-key: KEY').", type="authentication_error", code="invalid_api_key")

    return check


async def _complete(service: ModelService, body, request: Request, *, chat: bool, report=None, wait_s: float = 120):
    engine_request = body.to_engine()
    kind = "chat.completion" if chat else "text_completion"
    meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": body.model or service.model}
    admitted = []  # every choice is queued before any is awaited, so that they decode together
    started = []  # (gen, events, first) of each choice
    try:
        for one in choice_requests(engine_request, body.n or 1):
            admitted.append(await admit(service, body.model or service.model or "", one, wait_s=wait_s))
        for gen in admitted:
            started.append(await first_of(gen, request, service))
    except BaseException:
        for gen in admitted:
            gen.cancel()
        raise
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream_choices(started, meta, kind, chat, usage, report, body),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    collected = await asyncio.gather(*(_collect(s, request) for s in started))
    choices, finals = [], []
    for index, (text, reasoning, final, logprobs) in enumerate(collected):
        _report(report, meta, final)
        if final is None or final.reason == "error":
            raise APIError(500, f"The model failed while generating: {final.error if final else 'no result'}",
                           type="server_error")
        finals.append(final)
        choices.append(_choice(index, text, reasoning, final, logprobs, chat, body))
    return {**meta, "object": kind, "choices": choices, "usage": _usage_of(finals, body),
            "system_fingerprint": "lantern"}


async def _collect(started: Started, request: Request):
    """A whole reply: its text, its reasoning, its Finished event, and its tokens' log-probabilities."""
    parts, thoughts, logprobs, final = [], [], [], None
    async with aclosing(whole_reply(started, request)) as items:
        async for item in items:
            if isinstance(item, TextDelta):
                parts.append(item.text)
                thoughts.append(item.reasoning)
                logprobs.extend(item.logprobs)
            else:
                final = item
    return "".join(parts), "".join(thoughts), final, logprobs


def _choice(index: int, text: str, reasoning: str, final: Finished, logprobs: list, chat: bool, body) -> dict:
    asked = getattr(body, "logprobs", None)
    if chat:
        message = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if final.tool_calls:
            message["content"] = text if text.strip() else None
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}}
                                     for c in final.tool_calls]
        return {"index": index, "message": message, "logprobs": chat_logprobs(logprobs) if asked else None,
                "finish_reason": _finish(final)}
    return {"index": index, "text": text, "logprobs": completion_logprobs(logprobs) if asked is not None else None,
            "finish_reason": _finish(final)}


def _usage_of(finals: list[Finished], body) -> dict:
    """One prompt (computed once, the other choices reuse it) and every choice's tokens, as OpenAI counts `n`."""
    usage = _usage(finals[0], body)
    if len(finals) > 1:
        usage["completion_tokens"] = sum(f.stats.completion_tokens for f in finals)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _reporter(settings: ServerSettings, request: Request):
    """Where a finished completion's figures go: the request log's entry, the metrics, and `on_finished`."""
    def report(figures: dict) -> None:
        if (entry := request.scope.get("lantern.request_log")) is not None:
            entry["figures"] = figures
        request.app.state.metrics.reply(figures)
        if settings.on_finished is not None:
            settings.on_finished(figures)

    return report


def _report(report, meta: dict, final: Finished | None) -> None:
    if report is not None and final is not None:
        report({"id": meta["id"], "model": meta["model"], "finish_reason": final.reason, "error": final.error,
                "stats": final.stats})


async def _stream_choices(started, meta: dict, kind: str, chat: bool, usage: bool, report=None,
                          body=None) -> AsyncIterator[bytes]:
    """Every choice's chunks as they come (each with its index), then the usage of them all and [DONE]."""
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"
    queue: asyncio.Queue = asyncio.Queue()
    finals: list[Finished] = []

    async def pump(index, gen, events, first):
        try:
            async for chunk in _stream(gen, first, events, meta, chat, usage, report, body, index=index,
                                       finals=finals):
                await queue.put(chunk)
        finally:
            await queue.put(None)

    tasks = [asyncio.ensure_future(pump(i, gen, events, first)) for i, (gen, events, first) in enumerate(started)]
    try:
        left = len(tasks)
        while left:
            chunk = await queue.get()
            if chunk is None:
                left -= 1
            else:
                yield chunk
        if usage and len(finals) == len(started):
            yield _sse({**meta, "object": chunk_kind, "choices": [], "usage": _usage_of(finals, body),
                        "system_fingerprint": "lantern"})
        yield b"data: [DONE]\n\n"
    finally:
        for task in tasks:
            task.cancel()
        for gen, _events, _first in started:
            gen.cancel()  # the client went away (or we are done): the engine stops within one step


async def _stream(gen, first, events, meta: dict, chat: bool, usage: bool, report=None, body=None, *,
                  index: int = 0, finals: list | None = None) -> AsyncIterator[bytes]:
    """One choice's chunks; its Finished event goes to `finals`."""
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"
    asked = getattr(body, "logprobs", None)
    asked = bool(asked) if chat else asked is not None
    offset = 0  # the completion's text so far, for text_offset

    def chunk(delta: dict | str, finish: str | None, logprobs=None) -> bytes:
        shown = None
        if asked and logprobs is not None:
            shown = chat_logprobs(logprobs) if chat else completion_logprobs(logprobs, offset)
        choice = ({"index": index, "delta": delta, "logprobs": shown, "finish_reason": finish} if chat else
                  {"index": index, "text": delta, "logprobs": shown, "finish_reason": finish})
        body = {**meta, "object": chunk_kind, "choices": [choice], "system_fingerprint": "lantern"}
        if usage:
            body["usage"] = None
        return _sse(body)

    try:
        if chat:
            yield chunk({"role": "assistant", "content": ""}, None)
        item = first
        while item is not None:
            if isinstance(item, TextDelta):
                lps = list(item.logprobs)
                if chat:
                    if item.reasoning:
                        yield chunk({"reasoning_content": item.reasoning}, None)
                    if item.text:
                        yield chunk({"content": item.text}, None, lps)
                        lps = []
                    if item.calls:
                        yield chunk({"tool_calls": [_call_delta(c) for c in item.calls]}, None, lps)
                        lps = []
                    if lps and asked:  # tokens whose text is held back (a stop string's start) still count
                        yield chunk({}, None, lps)
                elif item.text or (lps and asked):
                    yield chunk(item.text, None, lps)
                    offset += len(item.text)
            elif item.reason == "error":
                _report(report, meta, item)
                yield _sse(error_body(f"The model failed while generating: {item.error}", "server_error"))
            else:
                _report(report, meta, item)
                if finals is not None:
                    finals.append(item)
                yield chunk({} if chat else "", _finish(item))
            item = await anext(events, None)
    except LanternError as e:
        yield _sse(error_body(str(e), "server_error"))
    finally:
        gen.cancel()  # the client went away (or we are done): the engine stops within one step


def _sse(body: dict) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def _call_delta(c) -> dict:
    d: dict = {"index": c.index}
    if c.name is not None:
        d.update(id=c.id, type="function", function={"name": c.name, "arguments": c.arguments})
    else:
        d["function"] = {"arguments": c.arguments}
    return d


def _finish(final: Finished) -> str:
    if final.reason == "tool_calls":
        return "tool_calls"
    return "stop" if final.reason in ("stop", "cancelled") else "length"


def _usage(final: Finished, body=None) -> dict:
    s = final.stats
    usage = {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
             "total_tokens": s.prompt_tokens + s.completion_tokens,
             "prompt_tokens_details": {"cached_tokens": s.cached_tokens}}
    if getattr(body, "prediction", None) is not None:
        accepted = s.accepted_prediction_tokens
        usage["completion_tokens_details"] = {"accepted_prediction_tokens": accepted,
                                              "rejected_prediction_tokens": max(0, s.predicted_tokens - accepted)}
    if s.drafted_tokens:  # every draft by source (lookup, prediction, draft model), which OpenAI has no field for
        usage.setdefault("completion_tokens_details", {})["drafts"] = {
            name: {"drafted": d, "accepted": a, "rejected": d - a} for name, (d, a) in s.drafts_by_source.items()}
    return usage


# -- errors in OpenAI's shape ----------------------------------------------------------------------

def _error(request: Request, body: dict, status: int, headers: dict | None = None) -> JSONResponse:
    """An error in the shape the endpoint's clients parse: OpenAI's, or Anthropic's on /v1/messages."""
    if is_messages_path(request.url.path):
        body = error_json(status, body["error"]["message"])
    return JSONResponse(body, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return _error(request, error_body(e.message, e.type, e.param, e.code), e.status, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        return _error(request, _validation_body(e), 400)

    @app.exception_handler(UnsupportedField)
    async def unsupported(request: Request, e: UnsupportedField):
        return _error(request, error_body(str(e), "invalid_request_error", e.param, "unsupported_parameter"), 400)

    @app.exception_handler(ContextOverflowError)
    async def overflow(request: Request, e: ContextOverflowError):
        return _error(request, error_body(str(e), "invalid_request_error", "messages", "context_length_exceeded"), 400)

    @app.exception_handler(InvalidRequestError)
    async def bad_request(request: Request, e: InvalidRequestError):
        return _error(request, error_body(str(e), "invalid_request_error", e.param), 400)

    @app.exception_handler(LanternError)
    async def lantern_error(request: Request, e: LanternError):
        return _error(request, error_body(str(e), "server_error"), 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return _error(request, error_body(str(e.detail), kind), e.status_code)


def _validation_body(e: RequestValidationError) -> dict:
    err = e.errors()[0] if e.errors() else {}
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidText):
        return error_body(str(cause), "invalid_request_error", cause.param, "invalid_unicode")
    if err.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif err.get("type") == "json_invalid":
        message, param = "The request body is not valid JSON.", None
    elif err.get("type") == "model_attributes_type" or not loc:
        message = "The request body must be a JSON object."
    else:
        message = f"Invalid value for '{param}': {err.get('msg', 'invalid')}."
    return error_body(message, "invalid_request_error", param, "invalid_request")


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = json.dumps(error_body(f"The request body is larger than {limit} bytes.", "invalid_request_error",
                                 code="request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
