"""A remote OpenAI-compatible server as a backend: llama-cpp-python's own server, and Lantern's."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from test_server import MODEL, start

from app.wiring import start_worker
from basics.errors import InvalidRequestError, ModelLoadError
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_cpp_server(smollm2_path, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("peer") / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.peer_server", "--model", str(smollm2_path), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", MODEL],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # a pipe nobody reads would fill up
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("llama-cpp-python's server did not start: " + log.read_text()[-2000:])
    yield url
    proc.terminate()
    proc.wait(30)


def chat_twice(url: str, model: str | None = None):
    worker = start_worker(model, backend="remote", remote_url=url)
    try:
        engine = worker.wait_ready(60)
        assert engine.backend.startswith("remote") and url in engine.backend_reason
        assert any("keeps its own prompt cache" in note for note in engine.notes)  # reuse is the server's figure
        q = [{"role": "user", "content": "What is the capital of France?"}]
        text, fin = worker.submit(GenerationRequest(messages=q, sampling=GREEDY, max_tokens=12)).text()
        q2 = q + [{"role": "assistant", "content": text}, {"role": "user", "content": "And of Italy?"}]
        text2, fin2 = worker.submit(GenerationRequest(messages=q2, sampling=GREEDY, max_tokens=12)).text()
        raw, fin3 = worker.submit(GenerationRequest(prompt="Monday, Tuesday,", sampling=GREEDY, max_tokens=6,
                                                    stop=["Thursday"])).text()
        too_long = GenerationRequest(messages=[{"role": "user", "content": "word " * 3000}], sampling=GREEDY,
                                     max_tokens=4)
        try:  # refused up front (Lantern: a 400), or an error in the stream (llama-cpp-python): never a reply
            _, bad = worker.submit(too_long).text()
            assert bad.reason == "error" and bad.error, bad
        except InvalidRequestError as e:
            assert "context" in str(e).lower() or "token" in str(e).lower(), e
        return (text, fin), (text2, fin2), (raw, fin3)
    finally:
        worker.close()


def test_chat_through_llama_cpp_pythons_server(llama_cpp_server):
    (text, fin), (text2, fin2), (raw, fin3) = chat_twice(llama_cpp_server)
    assert text and fin.reason in ("stop", "length") and 1 <= fin.stats.completion_tokens <= 12
    assert text2 and fin2.reason in ("stop", "length")  # this server sends no usage in streams
    assert raw and "Thursday" not in raw and fin3.reason in ("stop", "length")


def test_chat_through_lanterns_own_server():
    server = start()
    try:
        (text, fin), (text2, fin2), _ = chat_twice(server.base_url, MODEL)
        assert text and fin2.stats.cached_tokens >= fin.stats.prompt_tokens  # Lantern reports its cache reuse
    finally:
        server.stop()


@pytest.mark.parametrize("url,message", [("http://127.0.0.1:{port}/v1", "Cannot reach"), ("ftp://x", "http")])
def test_remote_errors_are_clear(url, message):
    worker = start_worker(None, backend="remote", remote_url=url.format(port=free_port()))
    try:
        with pytest.raises(ModelLoadError, match=message):
            worker.wait_ready(30)
    finally:
        worker.close()
    with pytest.raises(ModelLoadError, match="needs --remote-url"):
        start_worker(None, backend="remote")


def test_a_team_server_behind_an_api_key_takes_the_key_from_settings_or_the_command_line():
    from app.settings import Settings

    server = start(api_key="team-key")
    try:
        worker = start_worker(MODEL, backend="remote", remote_url=server.base_url)
        with pytest.raises(ModelLoadError, match="refused the API key"):
            worker.wait_ready(60)
        worker.close()
        s = Settings(backend="remote", remote_url=server.base_url, remote_key="team-key")  # the window's fields
        worker = start_worker(MODEL, backend=s.backend, remote_url=s.remote_url, remote_key=s.remote_key)
        try:
            text, fin = worker.submit(GenerationRequest(messages=[{"role": "user", "content": "Hi"}], sampling=GREEDY,
                                                        max_tokens=4)).text()
            assert fin.reason in ("stop", "length") and fin.error is None
        finally:
            worker.close()
    finally:
        server.stop()
