"""The MCP servers the user enabled, connected through the official `mcp` SDK: stdio (a command Lantern starts) and
streamable HTTP (a URL, with headers for a token). One asyncio loop on a thread of its own keeps every connection;
the window and the CLI ask it from any thread and get futures back.

A server is started only when asked (the user enabled it); its tools, resources and prompts are read once it
answers. A server that does not answer in time, or stops answering, is marked failed with the reason, and the rest go
on. Every tool's input schema is compiled when listed: a tool whose schema does not compile is listed with the reason
and never offered to a model; a server that announces more tools than MAX_TOOLS has the rest left out, said. Calls are
checked against the schema before they are sent (app/tools/calls.py), time out, can be cancelled, and their results
are cut to a size the model can read, the cut said.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.tools.calls import ToolResult, check_arguments, compile_schema, result_text
from app.tools.mcp_config import McpConfig, ServerConfig, load_config

log = logging.getLogger("lantern")

START_TIMEOUT_S = 30.0  # a server that has not answered by then is marked failed (npx may download first)
CALL_TIMEOUT_S = 120.0
MAX_TOOLS = 128  # offered to a model from one server; a server announcing more has the rest left out, said
MAX_LISTED = 1000  # read from a server at most (tools, resources, prompts each)
OFF, STARTING, READY, FAILED = "off", "starting", "ready", "failed"


@dataclass(frozen=True)
class ToolInfo:
    server: str
    name: str
    description: str = ""
    schema: dict = field(default_factory=dict)
    problem: str = ""  # why it is not offered ("" when it is)


@dataclass(frozen=True)
class ServerState:
    """A configured server as it is now: off, starting, ready, or failed (`why` says why)."""

    config: ServerConfig
    status: str = OFF
    why: str = ""
    tools: tuple[ToolInfo, ...] = ()
    resources: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    note: str = ""  # what was left out (too many tools), said beside the tools

    @property
    def name(self) -> str:
        return self.config.name


class McpHost:
    """Connections to the configured MCP servers. Thread-safe; `close()` stops every server it started."""

    def __init__(self, path: Path, *, on_change: Callable[[str], None] | None = None,
                 start_timeout: float = START_TIMEOUT_S, call_timeout: float = CALL_TIMEOUT_S):
        self.path = path
        self.on_change = on_change  # called with a server's name, on the host's thread, when its state changes
        self.start_timeout, self.call_timeout = start_timeout, call_timeout
        self._lock = threading.Lock()
        self._config = load_config(path)
        self._states: dict[str, ServerState] = {s.name: _configured(s) for s in self._config.servers}
        self._clients: dict[str, object] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- what is configured, and its state -----------------------------------------------------------------------

    def reload(self) -> McpConfig:
        """Read mcp.json again: new servers are listed (off), removed ones stopped, changed ones stopped."""
        config = load_config(self.path)
        with self._lock:
            old = self._config
            self._config = config
            names = {s.name for s in config.servers}
        for server in old.servers:
            now = config.get(server.name)
            if now is None or now != server:
                self.stop(server.name)
        with self._lock:
            self._states = {s.name: self._states.get(s.name) if self._states.get(s.name) and
                            self._states[s.name].config == s else _configured(s) for s in config.servers}
            for name in list(self._states):
                if name not in names:
                    del self._states[name]
        return config

    def servers(self) -> list[ServerState]:
        with self._lock:
            return [self._states[s.name] for s in self._config.servers if s.name in self._states]

    def state(self, name: str) -> ServerState | None:
        with self._lock:
            return self._states.get(name)

    def tools(self) -> list[ToolInfo]:
        """The tools a model may be offered: those of ready servers whose schema compiled."""
        return [t for s in self.servers() if s.status == READY for t in s.tools if not t.problem]

    # -- starting and stopping -----------------------------------------------------------------------------------

    def start(self, name: str) -> concurrent.futures.Future:
        """Start one server (it must be configured; the caller checks it is enabled); the future resolves to its
        state once it is ready or failed."""
        state = self.state(name)
        if state is None:
            raise KeyError(name)
        if state.config.problem:
            self._set(name, status=FAILED, why=state.config.problem)
            return _done(self.state(name))
        if state.status in (STARTING, READY):
            return _done(state)
        self._set(name, status=STARTING, why="", tools=(), resources=(), prompts=(), note="")
        return asyncio.run_coroutine_threadsafe(self._start(state.config), self._ensure_loop())

    def start_enabled(self) -> list[concurrent.futures.Future]:
        """Start every server the user enabled (and only those)."""
        return [self.start(s.name) for s in self.servers() if s.config.enabled and s.status not in (STARTING, READY)]

    def stop(self, name: str) -> None:
        """Stop a server (its process ends); waits until it has."""
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._stop(name), self._loop)
        try:
            fut.result(timeout=15)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("MCP server %s did not stop in time", name)
        if self.state(name) is not None and self.state(name).status != FAILED:
            self._set(name, status=OFF, why="", tools=(), resources=(), prompts=(), note="")

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        for name in list(self._tasks):
            self.stop(name)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = self._thread = None

    # -- calls ----------------------------------------------------------------------------------------------------

    def call(self, server: str, tool: str, arguments: object) -> concurrent.futures.Future:
        """Call a tool; the future resolves to a ToolResult (an error result for a bad call, a timeout, or a server
        that failed: the model reads it and goes on). Cancelling the future cancels the call."""
        state = self.state(server)
        info = next((t for t in state.tools if t.name == tool), None) if state is not None else None
        if state is None or state.status != READY:
            why = "is not running" if state is None or not state.why else f"failed: {state.why}"
            return _done(ToolResult(f"The MCP server {server!r} {why}.", is_error=True))
        if info is None or info.problem:
            return _done(ToolResult(f"The server {server!r} has no tool {tool!r} Lantern can call"
                                    + (f": {info.problem}" if info else "."), is_error=True))
        problem = check_arguments(info.schema, arguments)
        if problem:
            return _done(ToolResult(f"The arguments for {tool} are not valid: {problem}", is_error=True))
        return asyncio.run_coroutine_threadsafe(self._call(server, tool, arguments), self._ensure_loop())

    # -- on the host's loop ---------------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="lantern-mcp", daemon=True)
                self._thread.start()
            return self._loop

    async def _start(self, config: ServerConfig) -> ServerState:
        old = self._tasks.get(config.name)
        if old is not None and not old.done():  # a failed connection still closing: it ends first
            await self._stop(config.name)
        started = asyncio.get_running_loop().create_future()
        self._stops[config.name] = asyncio.Event()
        self._tasks[config.name] = asyncio.create_task(self._serve(config, started))
        return await started

    async def _serve(self, config: ServerConfig, started: asyncio.Future) -> None:
        """One server's connection, for as long as it runs: opened, listed, then kept until stopped."""
        name = config.name
        try:
            async with AsyncExitStack() as stack:
                with _Deadline(self.start_timeout) as deadline:
                    try:
                        client = await stack.enter_async_context(_client(config))
                        listed = await _listing(client, name)
                    except asyncio.CancelledError:
                        if deadline.passed:
                            raise ServerFailed(f"it did not answer within {self.start_timeout:.0f} s") from None
                        raise
                self._clients[name] = client
                self._set(name, status=READY, why="", **listed)
                _resolve(started, self.state(name))
                await self._stops[name].wait()
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # the SDK raises exception groups, OS errors, its own: the reason, said
            self._set(name, status=FAILED, why=_reason(e))
            log.info("MCP server %s failed: %s", name, _reason(e))
        finally:  # this connection's entries only: a restart may have made new ones already
            if self._tasks.get(name) is asyncio.current_task():
                self._tasks.pop(name, None)
                self._clients.pop(name, None)
            _resolve(started, self.state(name))

    async def _stop(self, name: str) -> None:
        stop, task = self._stops.pop(name, None), self._tasks.get(name)
        if stop is not None:
            stop.set()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def _call(self, server: str, tool: str, arguments: dict) -> ToolResult:
        client = self._clients.get(server)
        if client is None:
            return ToolResult(f"The MCP server {server!r} is not running.", is_error=True)
        t0 = time.monotonic()
        try:
            with _Deadline(self.call_timeout) as deadline:
                result = await client.call_tool(tool, arguments)
        except asyncio.CancelledError:
            if deadline.passed:
                return ToolResult(f"{tool} did not answer within {self.call_timeout:.0f} s.", is_error=True,
                                  seconds=time.monotonic() - t0)
            raise
        except BaseException as e:  # the connection closed mid-call: the server is gone, the chat goes on
            why = _reason(e)
            self._set(server, status=FAILED, why=f"it stopped answering during {tool}: {why}")
            stop = self._stops.pop(server, None)
            if stop is not None:
                stop.set()
            return ToolResult(f"The MCP server {server!r} failed during {tool}: {why}", is_error=True,
                              seconds=time.monotonic() - t0)
        return result_text(result, seconds=time.monotonic() - t0)

    def _set(self, name: str, **changes) -> None:
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return
            self._states[name] = replace(state, **changes)
        if self.on_change is not None:
            try:
                self.on_change(name)
            except Exception:  # a listener's error must not stop the server
                log.exception("MCP state listener failed")


class ServerFailed(Exception):
    pass


class _Deadline:
    """Cancel the current task after `seconds` (`passed` then says so). The SDK's connection opens anyio cancel
    scopes that stay open after it is entered, so a timeout scope around the entering (asyncio.timeout,
    anyio.fail_after) cannot be closed over them; a plain cancel of the task can."""

    def __init__(self, seconds: float):
        self.seconds, self.passed, self._handle = seconds, False, None

    def __enter__(self) -> _Deadline:
        task = asyncio.current_task()

        def fire() -> None:
            self.passed = True
            task.cancel()

        self._handle = asyncio.get_running_loop().call_later(self.seconds, fire)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.cancel()


def _configured(config: ServerConfig) -> ServerState:
    return ServerState(config, status=FAILED if config.problem else OFF, why=config.problem)


def _client(config: ServerConfig):
    # deferred: the SDK (and its HTTP stack) loads only once a server starts
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    if config.url:
        # deferred: with the SDK
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=dict(config.headers), timeout=httpx2.Timeout(30.0, read=300.0))
        return Client(streamable_http_client(config.url, http_client=http))
    params = StdioServerParameters(command=config.command, args=list(config.args), env=dict(config.env) or None,
                                   cwd=config.cwd or None)
    return Client(params)


async def _listing(client, server: str) -> dict:
    """A ready server's tools (each schema compiled, at most MAX_TOOLS offered), resources and prompts."""
    tools, cursor = [], None
    while len(tools) < MAX_LISTED:
        page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    listed = []
    for i, t in enumerate(tools[:MAX_LISTED]):
        problem = compile_schema(t.input_schema) or ("" if i < MAX_TOOLS else "beyond the first "
                                                     f"{MAX_TOOLS} tools of this server")
        listed.append(ToolInfo(server, str(t.name)[:128], (t.description or "")[:2000], dict(t.input_schema or {}),
                               problem))
    note = (f"{len(tools)} tools announced; the first {MAX_TOOLS} are offered" if len(tools) > MAX_TOOLS else "")
    resources = await _names(client, "list_resources", "resources", lambda r: str(r.uri))
    prompts = await _names(client, "list_prompts", "prompts", lambda p: p.name)
    return {"tools": tuple(listed), "resources": resources, "prompts": prompts, "note": note}


async def _names(client, method: str, attr: str, name) -> tuple[str, ...]:
    """Resources or prompts, where the server offers them (none where it does not)."""
    try:
        page = await getattr(client, method)()
    except Exception:  # not offered by this server: the SDK answers "method not found"
        return ()
    return tuple(name(x) for x in getattr(page, attr, ())[:MAX_LISTED])


def _reason(e: BaseException) -> str:
    """The innermost message of an exception (the SDK wraps them in groups)."""
    while getattr(e, "exceptions", None):  # an exception group (3.11's, or the backport's)
        e = e.exceptions[0]
    text = str(e).strip() or type(e).__name__
    if isinstance(e, FileNotFoundError):
        text = f"the command was not found ({e.filename or text})"
    return text.splitlines()[0][:300] if text else type(e).__name__


def _done(value) -> concurrent.futures.Future:
    fut: concurrent.futures.Future = concurrent.futures.Future()
    fut.set_result(value)
    return fut


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)

