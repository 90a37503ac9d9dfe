"""Every request the endpoint answers, for the window's log: when, method, path, status, how long, why it was
refused, and a completion's figures. Rejected requests are logged too: they are what a user debugging a client
needs to see."""
from __future__ import annotations

import json
import logging
import time
from typing import Callable

log = logging.getLogger("lantern.server")
ERROR_BODY_LIMIT = 8192  # of a refusal's body, read for its message


class RequestLog:
    """ASGI middleware, outermost, so refusals by the other middleware (Host, body size, deadlines) are seen."""

    def __init__(self, app, listener: Callable[[dict], None] | None):
        self.app, self.listener = app, listener

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.listener is None:
            return await self.app(scope, receive, send)
        entry = {"time": time.time(), "method": str(scope.get("method", ""))[:16],
                 "path": str(scope.get("path", ""))[:200], "status": 0, "ms": 0.0, "error": "", "figures": None}
        scope["lantern.request_log"] = entry  # the completion endpoints add their figures here
        started, refusal = time.perf_counter(), bytearray()

        async def watch(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body" and entry["status"] >= 400 and \
                    len(refusal) < ERROR_BODY_LIMIT:
                refusal.extend(message.get("body", b"")[:ERROR_BODY_LIMIT - len(refusal)])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            entry["status"] = entry["status"] or 500
            raise
        finally:
            entry["ms"] = (time.perf_counter() - started) * 1000
            entry["error"] = _message(bytes(refusal))
            try:
                self.listener(entry)
            except Exception:  # the log's reader must never break a request
                log.exception("The request log's listener failed")


def _message(body: bytes) -> str:
    """The `error.message` of an OpenAI-shaped refusal, or its text."""
    if not body:
        return ""
    try:
        data = json.loads(body)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("detail")
        return str(message if message is not None else data)[:300]
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")[:300]
