"""MCP servers from mcp.json, through the official SDK: real servers written with its own helpers
(tests/mcp_servers.py) over stdio and over streamable HTTP on loopback; ones that hang, crash mid-call, answer a
megabyte, announce 10,000 tools or a schema that does not compile; and mcp.json files that are damaged."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.tools.calls import RESULT_CHARS, check_arguments, compile_schema
from app.tools.mcp_config import (MASK, McpConfigError, ServerConfig, load_config, parse_config, remove_server,
                                  replace_server, set_enabled)
from app.tools.mcp_host import FAILED, MAX_TOOLS, OFF, READY, McpHost
from files.owned_files import take_notices

SERVERS = str(Path(__file__).with_name("mcp_servers.py"))


def _entry(mode: str, **more) -> dict:
    return {"command": sys.executable, "args": [SERVERS, mode], **more}


def _write(path: Path, servers: dict) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


@pytest.fixture
def host_of(tmp_path):
    hosts = []

    def make(servers: dict, **options) -> McpHost:
        host = McpHost(_write(tmp_path / "mcp.json", servers), **options)
        hosts.append(host)
        return host

    yield make
    for h in hosts:
        h.close()


# -- mcp.json ----------------------------------------------------------------------------------------------------

def test_a_pasted_claude_desktop_file_lists_its_servers_and_starts_none(tmp_path):
    pasted = {"mcpServers": {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                       "env": {"API_KEY": "sk-abcdef"}},
        "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer abc"}},
        "broken": {"args": ["no command"]},
        "bad name/..": {"command": "x"},
    }}
    (tmp_path / "mcp.json").write_text(json.dumps(pasted))
    config = load_config(tmp_path / "mcp.json")
    by = {s.name: s for s in config.servers}
    fs, remote = by["filesystem"], by["remote"]
    assert (fs.transport, fs.enabled, fs.problem) == ("stdio", False, "")  # never started before it is enabled
    assert fs.shown() == f"API_KEY={MASK} npx -y @modelcontextprotocol/server-filesystem /tmp"  # the key masked
    assert "sk-abcdef" not in fs.shown() and "abc" not in remote.shown().replace("example", "")
    assert (remote.transport, dict(remote.headers)) == ("http", {"Authorization": "Bearer abc"})  # kept as given
    assert "neither a command" in by["broken"].problem
    assert "must be 1 to 64 letters" in next(s for s in config.servers if s.name.startswith("bad name")).problem

    # switching one on changes only its "enabled" key; the others stay as the user wrote them
    set_enabled(tmp_path / "mcp.json", "filesystem", True)
    raw = json.loads((tmp_path / "mcp.json").read_text())["mcpServers"]
    assert raw["filesystem"] == {**pasted["mcpServers"]["filesystem"], "enabled": True}
    assert raw["broken"] == pasted["mcpServers"]["broken"] and raw["remote"] == pasted["mcpServers"]["remote"]
    replace_server(tmp_path / "mcp.json", ServerConfig(name="echo", command="echo", args=("hi",)))
    with pytest.raises(McpConfigError, match="exists already"):
        replace_server(tmp_path / "mcp.json", ServerConfig(name="echo", command="cat"))
    assert remove_server(tmp_path / "mcp.json", "echo").get("echo") is None


@pytest.mark.parametrize("content", [b"{not json", b'["a list"]', b'{"mcpServers": [1, 2]}', b"\xff\xfe",
                                     json.dumps({"mcpServers": {f"s{i}": {"command": "x"} for i in range(65)}})
                                     .encode()])
def test_a_damaged_mcp_json_is_moved_aside_and_lantern_starts_with_none(tmp_path, content):
    path = tmp_path / "mcp.json"
    path.write_bytes(content)
    take_notices()
    assert load_config(path).servers == []
    assert not path.exists() and len(list(tmp_path.glob("mcp.json.damaged-*"))) == 1  # kept, not deleted
    assert any("mcp.json was damaged" in n for n in take_notices())


def test_wrong_entries_say_what_is_wrong():
    config = parse_config(json.dumps({"mcpServers": {
        "both": {"command": "x", "url": "http://a"}, "ftp": {"url": "ftp://a/b"}, "num": {"command": 12},
        "env": {"command": "x", "env": {"A": 1}}, "on": {"command": "x", "enabled": "yes"},
        "nul": {"command": "x\x00y"}}}))
    why = {s.name: s.problem for s in config.servers}
    assert "both a command and a url" in why["both"] and "http:// or https://" in why["ftp"]
    assert "must be text" in why["num"] and "must be text" in why["env"] and "true or false" in why["on"]
    assert "without NUL" in why["nul"]


# -- the servers -------------------------------------------------------------------------------------------------

def test_a_stdio_server_starts_lists_and_answers_and_bad_arguments_never_reach_it(host_of):
    host = host_of({"tools": _entry("tools", enabled=True), "other": _entry("tools")})
    assert [s.status for s in host.servers()] == [OFF, OFF]  # nothing runs until asked
    futures = host.start_enabled()
    assert len(futures) == 1  # only the enabled one
    state = futures[0].result(timeout=60)
    assert state.status == READY, state.why
    assert {t.name for t in state.tools} >= {"add", "echo", "megabyte", "hang", "crash", "sneaky"}
    assert state.prompts == ("greet",)
    assert host.state("other").status == OFF
    result = host.call("tools", "add", {"a": 2, "b": 3}).result(timeout=30)
    assert (result.text, result.is_error) == ("5", False) and result.seconds > 0
    for bad in ({"a": "two", "b": 3}, {"a": 1}, [1, 2], "a=1"):
        refused = host.call("tools", "add", bad).result(timeout=5)
        assert refused.is_error and "not valid" in refused.text, bad
    unknown = host.call("tools", "nope", {}).result(timeout=5)
    assert unknown.is_error and "no tool 'nope'" in unknown.text
    off = host.call("other", "add", {"a": 1, "b": 2}).result(timeout=5)
    assert off.is_error and "is not running" in off.text


def test_a_megabyte_answer_is_cut_and_the_cut_is_said(host_of):
    host = host_of({"tools": _entry("tools", enabled=True)})
    assert host.start("tools").result(timeout=60).status == READY
    result = host.call("tools", "megabyte", {}).result(timeout=60)
    assert result.cut and result.size == 1 << 20 and len(result.text) < RESULT_CHARS + 200
    assert "[cut: the tool answered 1,048,576 characters" in result.text


def test_a_tool_result_is_untrusted_text_given_back_as_it_is(host_of):
    from mcp_servers import INJECTION

    host = host_of({"tools": _entry("tools", enabled=True)})
    assert host.start("tools").result(timeout=60).status == READY
    result = host.call("tools", "sneaky", {}).result(timeout=30)
    assert (result.text, result.is_error) == (INJECTION, False)  # only text: nothing in it is acted on
    assert host.state("tools").config.enabled and [s.name for s in host.servers()] == ["tools"]


def test_a_hanging_call_times_out_and_a_cancelled_one_stops_and_the_server_goes_on(host_of):
    host = host_of({"tools": _entry("tools", enabled=True)}, call_timeout=2)
    assert host.start("tools").result(timeout=60).status == READY
    t0 = time.monotonic()
    late = host.call("tools", "hang", {}).result(timeout=30)
    assert late.is_error and "did not answer within 2 s" in late.text and time.monotonic() - t0 < 20
    host.call_timeout = 60
    pending = host.call("tools", "hang", {})
    time.sleep(0.5)
    assert pending.cancel() or pending.done()
    assert host.call("tools", "echo", {"text": "still here"}).result(timeout=30).text == "still here"
    assert host.state("tools").status == READY


def test_a_server_that_crashes_mid_call_is_marked_failed_and_the_others_go_on(host_of):
    host = host_of({"a": _entry("tools", enabled=True), "b": _entry("tools", enabled=True)})
    for f in host.start_enabled():
        assert f.result(timeout=60).status == READY
    crashed = host.call("a", "crash", {}).result(timeout=30)
    assert crashed.is_error and "failed during crash" in crashed.text
    assert host.state("a").status == FAILED and "stopped answering during crash" in host.state("a").why
    assert host.call("b", "add", {"a": 1, "b": 1}).result(timeout=30).text == "2"
    again = host.start("a").result(timeout=60)  # started again by the user: it comes back
    assert again.status == READY


def test_a_server_that_never_answers_or_cannot_start_is_failed_with_the_reason(host_of, tmp_path):
    host = host_of({"hang": _entry("hang", enabled=True),
                    "missing": {"command": str(tmp_path / "no-such-program"), "enabled": True}}, start_timeout=3)
    states = {s.name: s for s in (f.result(timeout=60) for f in host.start_enabled())}
    assert states["hang"].status == FAILED and "did not answer within 3 s" in states["hang"].why
    assert states["missing"].status == FAILED and states["missing"].why


def test_ten_thousand_tools_are_listed_and_only_the_first_offered(host_of):
    host = host_of({"many": _entry("many", enabled=True)})
    state = host.start("many").result(timeout=120)
    assert state.status == READY, state.why
    offered = [t for t in host.tools() if t.server == "many"]
    assert len(offered) == MAX_TOOLS and f"the first {MAX_TOOLS} are offered" in state.note


def test_a_tool_whose_schema_does_not_compile_is_listed_with_the_reason_and_never_offered(host_of):
    host = host_of({"raw": _entry("bad-schema", enabled=True)})
    state = host.start("raw").result(timeout=60)
    broken = next(t for t in state.tools if t.name == "broken")
    assert "does not compile" in broken.problem
    assert [t.name for t in host.tools()] == ["good"]
    refused = host.call("raw", "broken", {"x": 1}).result(timeout=5)
    assert refused.is_error and "does not compile" in refused.text
    assert host.call("raw", "good", {"x": 1}).result(timeout=30).text == "called good"


def test_a_streamable_http_server_gets_its_token_and_answers(host_of):
    from mcp_servers import TOKEN

    port = _free_port()
    proc = subprocess.Popen([sys.executable, SERVERS, "http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        host = host_of({"web": {"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}, "enabled": True},
                        "no-token": {"url": url, "enabled": True}}, start_timeout=20)
        states = {s.name: s for s in (f.result(timeout=60) for f in host.start_enabled())}
        assert states["web"].status == READY, states["web"].why
        assert host.call("web", "add", {"a": 20, "b": 22}).result(timeout=30).text == "42"
        assert states["no-token"].status == FAILED and states["no-token"].why  # refused by the server: said
    finally:
        proc.kill()
        proc.wait()


def test_schemas_and_arguments_are_checked_before_any_call():
    assert compile_schema({"type": "object", "properties": {"a": {"type": "integer"}}}) == ""
    assert "not a JSON object" in compile_schema([1])
    assert "does not describe an object" in compile_schema({"type": "string"})
    assert "does not compile" in compile_schema({"type": "object", "properties": {"a": {"type": 12}}})
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    assert check_arguments(schema, {"path": "a"}) == ""
    assert "required" in check_arguments(schema, {})
    assert "path: 3 is not of type 'string'" in check_arguments(schema, {"path": 3})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the HTTP server ended"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the HTTP server did not listen")


def test_lantern_mcp_list_starts_only_the_enabled_servers_and_says_why_one_failed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "mcp.json", {"tools": _entry("tools", enabled=True, env={"API_KEY": "sk-secret"}),
                               "idle": _entry("tools"), "gone": {"command": str(tmp_path / "nope"), "enabled": True}})
    env = {**__import__("os").environ, "LANTERN_DATA_DIR": str(data)}
    run = subprocess.run([sys.executable, "-m", "cli.main", "mcp", "list", "--timeout", "30"], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).parent.parent, timeout=180)
    out = run.stdout
    assert run.returncode == 1, run.stderr  # one failed: said, and the exit status says so
    lines = {}
    for line in out.splitlines():  # the table's rows (each server's first line)
        if line.split():
            lines.setdefault(line.split()[0], line)
    assert "ready" in lines["tools"] and "add" in lines["tools"] and "megabyte" in lines["tools"]
    assert "off (not enabled)" in lines["idle"]
    assert "failed" in lines["gone"] and "not found" in lines["gone"]
    assert "sk-secret" not in out and f"API_KEY={MASK}" in out


def test_lantern_mcp_list_with_no_file_says_where_to_write_one(tmp_path):
    env = {**__import__("os").environ, "LANTERN_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "cli.main", "mcp", "list"], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parent.parent, timeout=120)
    assert run.returncode == 0 and "No MCP servers are configured" in run.stdout and "mcpServers" in run.stdout
