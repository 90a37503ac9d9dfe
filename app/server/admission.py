"""How a request gets its reply started, for every route: wait for the model (a load, another model's turn),
queue the request, and wait for its first event while watching the client. A client that leaves before the first
event is dropped before the model sees it (a 499); errors before any text (a bad template...) are HTTP errors."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, NamedTuple

from fastapi import Request

from app.server.errors import APIError
from app.server.service import ModelFailed, ModelLoading, ModelNotFound, ModelService, QueueFull
from models.facts import model_facts


class Started(NamedTuple):
    """A reply under way: its generation, its event stream, and the first event (None: it ended with none)."""
    gen: object
    events: object
    first: object


async def start_reply(service: ModelService, model: str, engine_request, request: Request, *,
                      wait_s: float) -> Started:
    """`admit` the request, then wait for its first event (`first_of`)."""
    gen = await admit(service, model, engine_request, wait_s=wait_s)
    return await first_of(gen, request, service)


async def first_of(gen, request: Request, service: ModelService) -> Started:
    """The first event of an admitted reply; the reply is cancelled if this fails, and a client that left is a
    499."""
    events = gen.events()
    try:
        first = await first_event(events, request, gen, service)
    except StopAsyncIteration:
        first = None
    except BaseException:
        gen.cancel()
        raise
    if first is None and gen.cancelled:
        raise APIError(499, "The client closed the connection.", code="client_closed")
    return Started(gen, events, first)


async def whole_reply(started: Started, request: Request) -> AsyncIterator:
    """A reply's events from its first, for an answer sent whole: the reply stops once its client leaves, and when
    the handler ends whatever way (a no-op once finished). Use it under contextlib.aclosing."""
    gen, events, item = started
    try:
        while item is not None:
            yield item
            if await request.is_disconnected():
                gen.cancel()
            item = await anext(events, None)
    finally:
        gen.cancel()


async def admit(service: ModelService, model: str, engine_request, *, wait_s: float, how=None):
    """`submit`, waiting up to `wait_s` while the model loads (or another model's requests finish first); past
    that, the 503 with Retry-After."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return submit(service, model, engine_request, how=how)
        except _Switched:
            pass
        except APIError as e:
            if e.code != "model_loading" or asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.05)


async def first_event(events, request: Request, gen, service: ModelService):
    """The first event; while the request waits in the queue its client is watched, and one that left is
    dropped before the model ever sees it (its prompt would be prefilled for nobody)."""
    first = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({first}, timeout=0.25)
            if done:
                return first.result()
            if not gen.cancelled and await request.is_disconnected():
                gen.cancel()
                service.dropped += 1
    finally:
        if not first.done():
            first.cancel()


def submit(service: ModelService, model: str, engine_request, *, how=None):
    """`how(model, engine_request)` (default: queue it for a reply), its errors as HTTP errors."""
    if "/" in model or "\\" in model or model.endswith(".gguf"):
        raise APIError(400, "The model field names a model, never a file path.", param="model",
                       code="invalid_model")

    kind = model_facts(model).get("kind")
    if kind == "embedding":
        raise APIError(400, f"{model} is an embedding model: it answers /v1/embeddings, not replies.", param="model",
                       code="invalid_model")
    if kind == "drafter":
        raise APIError(400, f"{model} is a Gemma 4 assistant: it drafts for its Gemma 4 model and cannot reply by "
                            "itself.", param="model", code="invalid_model")
    try:
        return (how or service.submit)(model, engine_request)
    except ModelNotFound as e:
        raise APIError(404, str(e), param="model", code="model_not_found") from None
    except ModelLoading as e:
        if e.switched:
            raise _Switched() from None
        raise APIError(503, str(e), type="server_error", code="model_loading", headers={"Retry-After": "2"}) from None
    except ModelFailed as e:
        raise APIError(503, str(e), type="server_error", code="model_failed") from None
    except QueueFull as e:
        raise APIError(429, str(e), type="rate_limit_error", code="queue_full", headers={"Retry-After": "1"}) from None


class _Switched(Exception):
    pass
