"""Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`, on the same engine as the
OpenAI endpoints (Claude Code and other Anthropic-SDK apps speak it).

Requests become the engine's chat messages: `system` the system message, `tool_use` blocks tool calls,
`tool_result` blocks tool messages, `thinking` blocks the reasoning the templates keep. Unknown fields and blocks
Lantern cannot honour (images, documents, server tools) are a 400 naming them, in Anthropic's error shape.
"""
from __future__ import annotations

import json
import uuid
from contextlib import aclosing
from dataclasses import replace
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from app.server.admission import admit, start_reply, whole_reply
from app.server.errors import APIError
from app.server.messages_request import CountTokensRequest, MessagesRequest
from engine.events import Finished, TextDelta

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
               499: "invalid_request_error", 500: "api_error", 503: "overloaded_error"}


def is_messages_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_json(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


# -- replies ----------------------------------------------------------------------------------------

def stop_reason(final: Finished) -> str:
    if final.reason == "tool_calls":
        return "tool_use"
    if final.stop_sequence is not None:
        return "stop_sequence"
    return "max_tokens" if final.reason == "length" else "end_turn"


def usage(final: Finished | None) -> dict:
    s = final.stats if final is not None else None
    if s is None:
        return {"input_tokens": 0, "output_tokens": 0}
    # Anthropic counts cached tokens apart from input_tokens: input_tokens + cache_read_input_tokens = the prompt
    return {"input_tokens": s.prompt_tokens - s.cached_tokens, "output_tokens": s.completion_tokens,
            "cache_read_input_tokens": s.cached_tokens, "cache_creation_input_tokens": 0}


def add_messages_routes(app: FastAPI, service, auth, reporter, wait_s: float) -> None:

    @app.post("/v1/messages/count_tokens", dependencies=[Depends(auth)])
    async def count_tokens(body: CountTokensRequest) -> dict:
        request = body.as_messages().to_engine()
        model = body.model or service.model or ""
        counting = await admit(service, model, request, wait_s=wait_s, how=service.count_prompt_tokens)
        return {"input_tokens": await counting}

    @app.post("/v1/messages", dependencies=[Depends(auth)])
    async def messages(body: MessagesRequest, request: Request):
        prompt = {"input_tokens": 0}  # the prompt's count once the engine knows it, before its first event

        def on_prompt(n_prompt: int, n_cached: int) -> None:
            prompt.update(input_tokens=n_prompt - n_cached, cache_read_input_tokens=n_cached)

        engine_request = replace(body.to_engine(), on_prompt=on_prompt)
        model = body.model or service.model or ""
        started = await start_reply(service, model, engine_request, request, wait_s=wait_s)
        gen, events, first = started
        meta = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model}
        report = reporter(request)
        if body.stream:
            return StreamingResponse(_stream(gen, first, events, meta, report, body.thinking_shown, prompt),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        blocks: list[dict] = []
        final = None
        async with aclosing(whole_reply(started, request)) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    _add_text(blocks, "thinking", item.reasoning)
                    _add_text(blocks, "text", item.text)
                    if not body.thinking_shown and blocks and blocks[-1]["type"] == "thinking":
                        blocks[-1]["thinking"] = ""  # display: omitted
                else:
                    final = item
        if final is not None:
            report(_figures(meta, final))
        if final is None or final.reason == "error":
            raise APIError(500, f"The model failed while generating: {final.error if final else 'no result'}",
                           type="server_error")
        blocks = [b for b in blocks if b["type"] != "text" or b["text"]]
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
                   for c in final.tool_calls]
        if not blocks:
            blocks = [{"type": "text", "text": ""}]
        return {**meta, "content": blocks, "stop_reason": stop_reason(final), "stop_sequence": final.stop_sequence,
                "usage": usage(final)}


def _add_text(blocks: list[dict], kind: str, text: str) -> None:
    if not text:
        return
    key = "thinking" if kind == "thinking" else "text"
    if blocks and blocks[-1]["type"] == kind:
        blocks[-1][key] += text
    else:
        blocks.append({"type": kind, key: text, **({"signature": ""} if kind == "thinking" else {})})


def _input(arguments: str) -> dict:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _figures(meta: dict, final: Finished) -> dict:
    return {"id": meta["id"], "model": meta["model"], "finish_reason": final.reason, "error": final.error,
            "stats": final.stats}


def _event(kind: str, body: dict) -> bytes:
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **body}, ensure_ascii=False).encode() + \
        b"\n\n"


async def _stream(gen, first, events, meta: dict, report, thinking_shown: bool,
                  prompt_usage: dict) -> AsyncIterator[bytes]:
    """Anthropic's event sequence: message_start, a start/delta/stop run per content block, message_delta with the
    stop reason and usage, message_stop."""
    yield _event("message_start", {"message": {**meta, "content": [], "stop_reason": None, "stop_sequence": None,
                                               "usage": {**prompt_usage, "output_tokens": 0}}})
    yield _event("ping", {})
    index, open_kind = -1, None
    calls: dict[int, int] = {}  # the engine's call index -> this message's block index

    def start(kind: str, block: dict) -> list[bytes]:
        nonlocal index, open_kind
        out = [_event("content_block_stop", {"index": index})] if open_kind is not None else []
        index, open_kind = index + 1, kind
        return out + [_event("content_block_start", {"index": index, "content_block": block})]

    try:
        item, final = first, None
        while item is not None:
            if isinstance(item, TextDelta):
                if item.reasoning:
                    if open_kind != "thinking":
                        for chunk in start("thinking", {"type": "thinking", "thinking": "", "signature": ""}):
                            yield chunk
                    if thinking_shown:
                        yield _event("content_block_delta", {"index": index, "delta": {
                            "type": "thinking_delta", "thinking": item.reasoning}})
                if item.text:
                    if open_kind != "text":
                        for chunk in start("text", {"type": "text", "text": ""}):
                            yield chunk
                    yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta",
                                                                                   "text": item.text}})
                for c in item.calls:
                    if c.name is not None:
                        for chunk in start(f"tool {c.index}", {"type": "tool_use", "id": c.id, "name": c.name,
                                                               "input": {}}):
                            yield chunk
                        calls[c.index] = index
                    if c.arguments and calls.get(c.index) == index:
                        yield _event("content_block_delta", {"index": index, "delta": {
                            "type": "input_json_delta", "partial_json": c.arguments}})
            else:
                final = item
            item = await anext(events, None)
        if final is not None:
            report(_figures(meta, final))
        if final is None or final.reason == "error":
            message = final.error if final is not None else "no result"
            yield _event("error", {"error": {"type": "api_error",
                                             "message": f"The model failed while generating: {message}"}})
            return
        if open_kind is not None:
            yield _event("content_block_stop", {"index": index})
        yield _event("message_delta", {"delta": {"stop_reason": stop_reason(final),
                                                 "stop_sequence": final.stop_sequence}, "usage": usage(final)})
        yield _event("message_stop", {})
    finally:
        gen.cancel()
