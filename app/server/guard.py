"""What stands between the network and the API: the Host allow-list (DNS rebinding), deadlines for headers
and bodies, a bound on open connections, and errors in OpenAI's shape even for broken HTTP.

Web pages can make a browser send requests to loopback; a request whose Host is not this server's name is one.
Slow or unfinished requests would otherwise hold connections (and file descriptors) forever.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import time

log = logging.getLogger("lantern.server")


def error_json(message: str, type: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type, "param": None, "code": code}}).encode()


def http_response(status: int, reason: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class OnceLog:
    """One log line per condition and minute, with how often it happened meanwhile (never one per connection)."""

    def __init__(self, every_s: float = 60.0):
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warn(self, condition: str, message: str) -> None:
        now = time.monotonic()
        self._count[condition] = self._count.get(condition, 0) + 1
        if now - self._last.get(condition, -1e9) >= self.every_s:
            n = self._count.pop(condition)
            self._last[condition] = now
            log.warning("%s%s", message, f" ({n} times since the last report)" if n > 1 else "")


def allowed_hosts(bound: str, extra: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The Host names this server answers to; None when bound to every address (then a key is required)."""
    if bound in ("0.0.0.0", "::", ""):
        return None
    names = {"localhost", "127.0.0.1", "::1", bound.strip("[]").lower()}
    return frozenset(names | {h.strip("[]").lower() for h in extra})


def host_name(header: bytes) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class HostCheck:
    """ASGI middleware: 400 for a request whose Host is not one of this server's names."""

    def __init__(self, app, allowed: frozenset[str] | None, once: OnceLog):
        self.app, self.allowed, self.once = app, allowed, once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.allowed is None:
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host")
        if host is not None and host_name(host) not in self.allowed:
            self.once.warn("host", f"Refused requests for a foreign Host ({host[:80]!r}): a web page trying DNS "
                           "rebinding, or a name to add with --allow-host")
            body = error_json("The Host header names another server; this one answers to "
                              f"{', '.join(sorted(self.allowed))} (add names with --allow-host).",
                              "invalid_request_error", "invalid_host")
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)


class BodyDeadline:
    """ASGI middleware: the whole body must arrive within `seconds` of the headers (408 otherwise)."""

    def __init__(self, app, seconds: float, once: OnceLog):
        self.app, self.seconds, self.once = app, seconds, once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline = asyncio.get_running_loop().time() + self.seconds
        started = body_done = False

        async def timed_receive():
            nonlocal body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise _BodyTimeout() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _BodyTimeout:
            self.once.warn("body", f"Closed connections whose request body did not arrive within {self.seconds:g} s")
            if not started:
                body = error_json(f"The request body did not arrive within {self.seconds:g} s.",
                                  "invalid_request_error", "request_timeout")
                await send({"type": "http.response.start", "status": 408,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})


class _BodyTimeout(BaseException):
    """BaseException: FastAPI turns any Exception while reading a body into a vague 400."""


def guarded_protocol(*, header_seconds: float, max_connections: int, once: OnceLog):
    """uvicorn's h11 protocol with a header deadline, a bound on open connections (503 beyond it),
    and OpenAI-shaped errors for requests too broken to reach the app."""
    # deferred: uvicorn, only while the server runs
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_connections = set()
    quieted = []

    class GuardedProtocol(H11Protocol):
        def connection_made(self, transport):
            if not quieted:  # the server's own loop, known from its first connection
                quiet_accept_errors(once)
                quieted.append(True)
            super().connection_made(transport)
            if len(open_connections) >= max_connections:
                once.warn("flood", f"Refused connections beyond {max_connections} open at once")
                body = error_json(f"The server has {max_connections} connections open; retry shortly.",
                                  "server_error", "too_many_connections")
                transport.write(http_response(503, "Service Unavailable", body))
                transport.close()
                return
            open_connections.add(self)
            self._header_timer = self.loop.call_later(header_seconds, self._headers_late)

        def connection_lost(self, exc):
            open_connections.discard(self)
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

        def handle_events(self):
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete and \
                    getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()  # the headers are in: the body has its own deadline
                self._header_timer = None

        def on_response_complete(self):
            super().on_response_complete()
            if self.transport is not None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_seconds, self._headers_late)  # the next request

        def _headers_late(self):
            if self.cycle is None or self.cycle.response_complete:
                if self.transport is not None and not self.transport.is_closing():
                    received = len(self.conn.trailing_data[0]) if hasattr(self.conn, "trailing_data") else 0
                    if received:
                        once.warn("headers", f"Closed connections whose headers did not arrive within "
                                  f"{header_seconds:g} s")
                        body = error_json(f"The request headers did not arrive within {header_seconds:g} s.",
                                          "invalid_request_error", "request_timeout")
                        self.transport.write(http_response(408, "Request Timeout", body))
                    self.transport.close()  # an idle keep-alive connection is simply closed

        def send_400_response(self, msg: str):
            once.warn("framing", f"Refused requests with broken HTTP framing ({msg})")
            body = error_json(f"The HTTP request is malformed: {msg}", "invalid_request_error", "invalid_http")
            self.transport.write(http_response(400, "Bad Request", body))
            self.transport.close()

    return GuardedProtocol


def connection_bound(wanted: int) -> int:
    """At most `wanted` connections, and never so many that the file descriptors run out (model files, logs and
    the event loop need some)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(4, min(wanted, soft - 128 if soft > 512 else soft // 4))


def quiet_accept_errors(once: OnceLog) -> None:
    """Out of file descriptors, asyncio logs a traceback for every failed accept(), and for each refused socket the
    client closed first; one line a minute says it."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop, context):
        e = context.get("exception")
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            once.warn("fds", f"Out of file descriptors ({e.strerror}): new connections wait until others close")
            return
        if isinstance(e, ValueError) and str(e).startswith("Invalid file descriptor"):
            # asyncio's callback for a socket a flooding client already closed (its fd is -1): nothing is lost,
            # the connection is gone; one line says it instead of a traceback per socket
            once.warn("closed", "Dropped events for connections closed while they were being refused")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
