"""OpenAI's Responses API: `POST /v1/responses` (and `GET`/`DELETE /v1/responses/{id}` for stored ones), on the same
engine as chat completions (OpenAI's Codex CLI and the newer SDK features speak it).

`input` items become the engine's chat messages: `message` items their turns, `function_call` items an assistant's
tool calls, `function_call_output` items tool messages, `reasoning` items the thinking templates keep. Responses
are stateless unless asked: one sent with `store: true` is kept in memory (the most recent STORED, least recently
used first out), so `previous_response_id` continues it; an id Lantern does not have is a 400 naming it.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import aclosing
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from app.server.admission import start_reply, whole_reply
from app.server.errors import APIError
from app.server.request_parts import UnsupportedField
from app.server.responses_request import STORED, ResponsesRequest, input_messages
from engine.events import Finished, TextDelta


class Stored:
    """Recent responses by id: the conversation each ended (for previous_response_id) and the response itself."""

    def __init__(self, size: int = STORED):
        self.size = size
        self._items: OrderedDict[str, tuple[list[dict], dict]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response_id: str, messages: list[dict], response: dict) -> None:
        with self._lock:
            self._items[response_id] = (messages, response)
            self._items.move_to_end(response_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> tuple[list[dict], dict] | None:
        with self._lock:
            found = self._items.get(response_id)
            if found is not None:
                self._items.move_to_end(response_id)
            return found

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None


class _Output:
    """The reply's output items, built as its events arrive (for the stream's events and the final response)."""

    def __init__(self):
        self.items: list[dict] = []
        self.reasoning_tokens = 0

    def open(self, kind: str) -> tuple[dict, bool]:
        """The item of `kind` to add to: the last one if it is of that kind, else a new one (True)."""
        if self.items and self.items[-1]["type"] == kind and kind != "function_call":
            return self.items[-1], False
        if kind == "message":
            item = {"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "in_progress",
                    "role": "assistant", "content": [{"type": "output_text", "text": "", "annotations": [],
                                                      "logprobs": []}]}
        elif kind == "reasoning":
            item = {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex[:24]}", "summary": [],
                    "content": [{"type": "reasoning_text", "text": ""}]}
        else:
            item = {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}", "call_id": "", "name": "",
                    "arguments": "", "status": "in_progress"}
        self.items.append(item)
        return item, True


def add_responses_routes(app: FastAPI, service, auth, reporter, wait_s: float) -> None:

    stored = Stored()
    app.state.responses = stored

    @app.get("/v1/responses/{response_id}", dependencies=[Depends(auth)])
    async def get_response(response_id: str) -> dict:
        found = stored.get(response_id)
        if found is None:
            raise APIError(404, f"No stored response {response_id[:200]!r}.", param="response_id",
                           code="response_not_found", type="not_found_error")
        return found[1]

    @app.delete("/v1/responses/{response_id}", dependencies=[Depends(auth)])
    async def delete_response(response_id: str) -> dict:
        if not stored.delete(response_id):
            raise APIError(404, f"No stored response {response_id[:200]!r}.", param="response_id",
                           code="response_not_found", type="not_found_error")
        return {"id": response_id, "object": "response", "deleted": True}

    @app.post("/v1/responses", dependencies=[Depends(auth)])
    async def create(body: ResponsesRequest, request: Request):
        history: list[dict] = []
        if body.previous_response_id is not None:
            found = stored.get(body.previous_response_id)
            if found is None:
                raise UnsupportedField("previous_response_id", f"Lantern has no response "
                                       f"{body.previous_response_id!r} (only responses sent with store: true are "
                                       f"kept, in memory, the most recent {STORED}, and not across restarts): send "
                                       "the whole input instead")
            history = found[0]
        engine_request = body.to_engine(history)
        model = body.model or service.model or ""
        started = await start_reply(service, model, engine_request, request, wait_s=wait_s)
        gen, events, first = started
        response = _skeleton(body, model)
        keep = body.store is True  # stateless by default: an app that wants a response kept says so

        def done(output: _Output, final: Finished) -> dict:
            reporter(request)({"id": response["id"], "model": model, "finish_reason": final.reason,
                               "error": final.error, "stats": final.stats})
            _finish(response, output, final)
            if keep and final.reason != "error":
                stored.put(response["id"], list(engine_request.messages) + _as_messages(output.items), response)
            return response

        if body.stream:
            return StreamingResponse(_stream(gen, first, events, response, done), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        output, final = _Output(), None
        async with aclosing(whole_reply(started, request)) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    _apply(output, item)
                else:
                    final = item
        if final is None or final.reason == "error":
            raise APIError(500, f"The model failed while generating: {final.error if final else 'no result'}",
                           type="server_error")
        _close(output)  # the items completed (their events are for streams)
        return done(output, final)


def _skeleton(body: ResponsesRequest, model: str) -> dict:
    return {"id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "error": None, "incomplete_details": None, "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens, "model": model, "output": [],
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": body.reasoning.model_dump() if body.reasoning else {"effort": None, "summary": None},
            "store": body.store is True, "temperature": 1.0 if body.temperature is None else body.temperature,
            "text": {"format": (body.text.format if body.text and body.text.format else {"type": "text"})},
            "tool_choice": body.tool_choice or "auto", "tools": body.tools or [],
            "top_p": 1.0 if body.top_p is None else body.top_p, "truncation": body.truncation or "disabled",
            "usage": None, "user": body.user, "metadata": body.metadata or {}}


def _apply(output: _Output, delta: TextDelta) -> list[tuple[str, dict]]:
    """Add `delta` to the output items; the stream's events for it, as (name, body) without sequence numbers."""
    events: list[tuple[str, dict]] = []

    def opened(kind: str, **fields) -> tuple[dict, int]:
        item, new = output.open(kind)
        index = len(output.items) - 1
        item.update(fields)  # a call's id and name, in its output_item.added already
        if new:
            events.append(("response.output_item.added", {"output_index": index, "item": _public(item)}))
            if kind in ("message", "reasoning"):
                events.append(("response.content_part.added", {"item_id": item["id"], "output_index": index,
                                                               "content_index": 0,
                                                               "part": dict(item["content"][0])}))
        return item, index

    if delta.reasoning:
        item, index = opened("reasoning")
        item["content"][0]["text"] += delta.reasoning
        if not delta.text:
            output.reasoning_tokens += len(delta.tokens)
        events.append(("response.reasoning_text.delta", {"item_id": item["id"], "output_index": index,
                                                         "content_index": 0, "delta": delta.reasoning}))
    if delta.text:
        item, index = opened("message")
        item["content"][0]["text"] += delta.text
        events.append(("response.output_text.delta", {"item_id": item["id"], "output_index": index,
                                                      "content_index": 0, "delta": delta.text, "logprobs": []}))
    for c in delta.calls:
        if c.name is not None:
            item, index = opened("function_call", call_id=c.id, name=c.name)
            item["engine_index"] = c.index
        else:
            index, item = next(((i, it) for i, it in enumerate(output.items) if it.get("engine_index") == c.index),
                               (None, None))
            if item is None:
                continue
        if c.arguments:
            item["arguments"] += c.arguments
            events.append(("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index,
                                                                      "delta": c.arguments}))
    return events


def _public(item: dict) -> dict:
    """A copy of `item` as a client sees it (the engine's call index left out)."""
    return {k: (json.loads(json.dumps(v)) if isinstance(v, (list, dict)) else v) for k, v in item.items()
            if k != "engine_index"}


def _close(output: _Output) -> list[tuple[str, dict]]:
    """Each item's done events, in order, once the reply has ended."""
    events = []
    for index, item in enumerate(output.items):
        item.pop("engine_index", None)
        if item["type"] == "message":
            item["status"] = "completed"
            text = item["content"][0]["text"]
            events.append(("response.output_text.done", {"item_id": item["id"], "output_index": index,
                                                         "content_index": 0, "text": text, "logprobs": []}))
            events.append(("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                          "content_index": 0, "part": dict(item["content"][0])}))
        elif item["type"] == "reasoning":
            events.append(("response.reasoning_text.done", {"item_id": item["id"], "output_index": index,
                                                            "content_index": 0, "text": item["content"][0]["text"]}))
            events.append(("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                          "content_index": 0, "part": dict(item["content"][0])}))
        else:
            item["status"] = "completed"
            events.append(("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index,
                                                                     "name": item["name"],
                                                                     "arguments": item["arguments"]}))
        events.append(("response.output_item.done", {"output_index": index, "item": _public(item)}))
    return events


def _finish(response: dict, output: _Output, final: Finished) -> None:
    s = final.stats
    incomplete = final.reason == "length"
    response.update(status="incomplete" if incomplete else "completed", output=output.items,
                    incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
                    completed_at=int(time.time()),
                    usage={"input_tokens": s.prompt_tokens, "input_tokens_details": {"cached_tokens": s.cached_tokens},
                           "output_tokens": s.completion_tokens,
                           "output_tokens_details": {"reasoning_tokens": output.reasoning_tokens},
                           "total_tokens": s.prompt_tokens + s.completion_tokens})


def _as_messages(items: list[dict]) -> list[dict]:
    """A response's output items as the engine messages that continue the conversation."""
    return input_messages(items and [_as_input(i) for i in items], {})


def _as_input(item: dict) -> dict:
    if item["type"] == "message":
        return {"type": "message", "role": "assistant", "content": item["content"]}
    if item["type"] == "reasoning":
        return {"type": "reasoning", "content": item["content"]}
    return {"type": "function_call", "call_id": item["call_id"], "name": item["name"], "arguments": item["arguments"]}


async def _stream(gen, first, events, response: dict, done) -> AsyncIterator[bytes]:
    sequence = 0

    def event(name: str, body: dict) -> bytes:
        nonlocal sequence
        data = {"type": name, "sequence_number": sequence, **body}
        sequence += 1
        return f"event: {name}\ndata: ".encode() + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

    yield event("response.created", {"response": dict(response)})
    yield event("response.in_progress", {"response": dict(response)})
    output, final = _Output(), None
    try:
        item = first
        while item is not None:
            if isinstance(item, TextDelta):
                for name, body in _apply(output, item):
                    yield event(name, body)
            else:
                final = item
            item = await anext(events, None)
        if final is None or final.reason == "error":
            message = final.error if final is not None else "no result"
            failed = {**response, "status": "failed", "error": {"code": "server_error",
                                                                "message": f"The model failed: {message}"}}
            yield event("response.failed", {"response": failed})
            return
        for name, body in _close(output):
            yield event(name, body)
        finished = done(output, final)
        yield event("response.incomplete" if finished["status"] == "incomplete" else "response.completed",
                    {"response": finished})
    finally:
        gen.cancel()
