"""The endpoint under a foreign Host, slow headers, unterminated bodies, broken framing, invalid Unicode, a client
that leaves while queued, and a connection flood under a lowered file limit while a normal client is served."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from test_server import MODEL, QUESTION, root, start

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    finished, requests = [], []
    s = start(header_timeout_s=1.0, body_timeout_s=2.0, on_finished=finished.append, on_request=requests.append)
    s.finished, s.requests = finished, requests
    yield s
    s.stop()


def raw(server, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `wait` passes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


def last_logged(server, status: int) -> dict:
    """The request log's newest entry once it has the `status` looked for: the log gets a request after its last byte
    went out, so a client can read the reply a moment before the entry is there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.requests and server.requests[-1]["status"] == status:
            return server.requests[-1]
        time.sleep(0.01)
    return server.requests[-1] if server.requests else {}


def error_of(response: bytes) -> dict:
    body = response.split(b"\r\n\r\n", 1)[1]
    return json.loads(body)["error"]


def test_a_foreign_host_is_refused_and_loopback_names_are_served(server):
    base = root(server)
    r = httpx.post(base + "/v1/chat/completions", headers={"Host": f"attacker.example:{server.port}",
                                                           "Origin": f"http://attacker.example:{server.port}"},
                   json={"model": MODEL, "messages": QUESTION, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    logged = last_logged(server, 400)
    assert logged["status"] == 400 and "Host header" in logged["error"] and logged["path"] == "/v1/chat/completions"
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "localhost"):
        assert httpx.get(base + "/health", headers={"Host": host}).status_code == 200
    assert httpx.get(base + "/health", headers={"Host": "[::1]:80"}).status_code == 200


def test_slow_headers_are_cut_off_with_an_error(server):
    out = raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Ty", wait=120)
    assert out.startswith(b"HTTP/1.1 408") and error_of(out)["code"] == "request_timeout"  # the server's deadline


@pytest.mark.parametrize("body", ["unterminated chunked", "content-length beyond the body"])
def test_a_body_that_never_ends_is_cut_off_with_an_error(server, body):
    if body == "unterminated chunked":
        data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n")
    else:
        data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\n\r\n{\"model\": ")
    out = raw(server, data, wait=120)
    assert out.startswith(b"HTTP/1.1 408") and error_of(out)["code"] == "request_timeout"
    logged = last_logged(server, 408)  # in the window's request log, with why
    assert (logged["method"], logged["path"], logged["status"]) == ("POST", "/v1/chat/completions", 408)
    assert "body" in logged["error"].lower() and logged["figures"] is None


def test_broken_framing_gets_an_openai_shaped_error(server):
    out = raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and error_of(out)["type"] == "invalid_request_error"
    out = raw(server, b"\x00\x01\x02 garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and error_of(out)["code"] == "invalid_http"


@pytest.mark.parametrize("where", ["messages[0].content", "model", "stop[0]", "messages[0].content[0].text"])
def test_a_lone_surrogate_in_any_text_field_is_a_400_naming_it(server, where):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    if where == "model":
        body["model"] = "@@SURROGATE@@"
    elif where == "stop[0]":
        body["stop"] = ["@@SURROGATE@@"]
    elif where.endswith("text"):
        body["messages"][0]["content"] = [{"type": "text", "text": "@@SURROGATE@@"}]
    else:
        body["messages"][0]["content"] = "@@SURROGATE@@"
    data = json.dumps(body).replace("@@SURROGATE@@", "a\\ud800b")
    r = httpx.post(root(server) + "/v1/chat/completions", content=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == where and "Unicode" in r.json()["error"]["message"]


def test_a_client_that_leaves_while_queued_never_reaches_the_model(server):
    import threading

    release = threading.Event()
    busy = server.service.engine_call(lambda engine: release.wait(60))  # the engine thread is busy meanwhile
    before_tokens = server.service.engine_call(lambda engine: engine.cached_tokens)
    reports = len(server.finished)
    impatient = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=1.0)
    try:
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "never run " * 50}],
                                              max_tokens=5)
        deadline = time.monotonic() + 120  # the server notices the hang-up (within a quarter second when idle)
        while server.service.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.service.dropped == 1
    finally:
        release.set()
    busy.result(60)
    cached_before = before_tokens.result(60)
    after = server.service.engine_call(lambda engine: engine.cached_tokens).result(60)
    assert after == cached_before, "the dropped request's prompt reached the model"
    assert len(server.finished) == reports
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3)
    assert r.choices[0].message.content is not None


def test_a_connection_flood_under_a_low_file_limit_still_serves_a_normal_client(tmp_path):
    """The server runs in a child process with RLIMIT_NOFILE at 128; 400 idle connections are opened."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)); "
            "from cli.main import main; sys.exit(main(sys.argv[1:]))")
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port), "--n-ctx", "512"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    socks = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health").json()["status"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        refused = 0
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                refused += 1
        import select

        busy, deadline = 0, time.monotonic() + 120  # the server answers those beyond its bound with a 503
        while busy == 0 and time.monotonic() < deadline:
            readable, _, _ = select.select(socks, [], [], 1.0)
            for s in readable:
                try:
                    if s.recv(100).startswith(b"HTTP/1.1 503"):
                        busy += 1
                except OSError:
                    pass
        assert busy > 0, "no connection was refused with a 503"
        for s in socks:
            s.close()
        socks.clear()
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=3)
        r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3)
        assert r.choices[0].message.content is not None
        assert proc.poll() is None
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(30)
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text
    assert text.count("Refused connections beyond") <= 2, text[-3000:]
