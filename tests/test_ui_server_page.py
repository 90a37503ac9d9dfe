"""The Server page's ready-to-copy code runs as pasted (curl, Python's openai package, JavaScript's fetch in node)
against the endpoint it started, and sharing on the local network binds every address with a key."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("pytestqt")


def _run(args: list[str], code: str | None = None) -> str:
    done = subprocess.run(args, input=code, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_PROXY": "*"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_snippets_run_against_the_endpoint_as_copied(qtbot, make_window):
    w = make_window(max_tokens=8)
    page = w.server_page
    page.lan.setChecked(True)  # every address: a key is made, and the code carries it
    key = page.key.text()
    assert page.address.text() == "0.0.0.0" and key.startswith("lantern-") and len(key) > 20
    page.toggle.click()
    qtbot.waitUntil(lambda: page.state == "running", timeout=60_000)
    assert "on your network" in page.url.text()
    url = page.reach_url()
    assert url.endswith(f":{page.server.port}/v1")
    page.language.setCurrentText("Python")
    code = page.code.toPlainText()
    assert "smollm2-135m-instruct" in code and key in code and url in code
    out = _run([sys.executable, "-"], code)
    assert out.strip()  # the model's words, streamed
    page.language.setCurrentText("curl")
    assert '"content"' in _run(["bash", "-c", page.code.toPlainText()])
    node = shutil.which("node")
    assert node, "Node.js (18 or newer, with fetch) runs the JavaScript snippet"
    page.language.setCurrentText("JavaScript")  # a module: top-level await
    assert _run([node, "--input-type=module", "-"], page.code.toPlainText()).strip()
    page.language.setCurrentText("curl")  # without the key: refused
    code = page.code.toPlainText()
    bare = code.replace(f" \\\n  -H 'Authorization: Bearer {key}'", "")
    assert bare != code and "401" in _run(["bash", "-c", bare + " -s -o /dev/null -w '%{http_code}'"])
    page.toggle.click()
    qtbot.waitUntil(lambda: page.state == "stopped", timeout=30_000)
    page.lan.setChecked(False)
    assert page.address.text() == "127.0.0.1" and "127.0.0.1:" in page.code.toPlainText()


def test_the_snippet_follows_the_model_and_the_form(qtbot, make_window):
    from app.server.snippets import snippet

    w = make_window()
    page = w.server_page
    page.port.setValue(8123)
    page.language.setCurrentText("curl")
    assert "http://127.0.0.1:8123/v1/chat/completions" in page.code.toPlainText()
    assert "Authorization" not in page.code.toPlainText()
    quoted = snippet("curl", base_url="http://h:1/v1", model="it's", key="k'ey")
    assert _run(["bash", "-c", f"printf '%s' {quoted.split(' -d ', 1)[1]}"]) == '{"model": "it\'s", "messages": ' \
        '[{"role": "user", "content": "Say hello in five words."}]}'
    with pytest.raises(ValueError):
        snippet("Cobol", base_url="x", model="m", key=None)
