"""The window's bridge to the engine, on the real starter model and a real Qt event loop (offscreen)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from engine.events import GenerationRequest  # noqa: E402
from engine.sampling import SamplingParams  # noqa: E402
from ui.chat_session import FLUSH_MS, ChatSession  # noqa: E402

GREEDY = SamplingParams(temperature=0)


def cold():
    def forget(w):
        w.call(lambda e: (e.forget_cache(), e.states.clear())).result(30)
    return forget


def test_a_reply_streams_in_batches_and_the_event_loop_stays_responsive(qtbot, worker):
    from PySide6.QtCore import QTimer

    session = ChatSession(worker)
    request = GenerationRequest(messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
                                sampling=GREEDY, max_tokens=300, prompt_lookup=False)
    cold()(worker)
    expected, _ = worker.submit(request).text()  # the same request straight from the engine, from a cold cache
    cold()(worker)
    chunks, gaps = [], []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe = QTimer(session)
    probe.setInterval(5)
    probe.timeout.connect(tick)
    probe.start()
    session.sig_text_received.connect(lambda text: chunks.append(text))
    t0 = time.perf_counter()
    with qtbot.waitSignal(session.sig_reply_finished, timeout=120_000) as finished:
        session.send(request)
    elapsed = time.perf_counter() - t0
    probe.stop()
    assert "".join(chunks) == expected and finished.args[0].reason in ("stop", "length")
    assert finished.args[0].stats.completion_tokens > 50
    # batched: at most one update per flush interval (coarse timers may fire up to 5% early), whatever the speed
    assert len(chunks) <= elapsed * 1000 / (FLUSH_MS * 0.95) + 2
    print(f"\nlongest event-loop gap during a {finished.args[0].stats.completion_tokens}-token reply: "
          f"{max(gaps) * 1000:.1f} ms (target < 50 ms), {len(chunks)} text updates in {elapsed:.2f} s")
    assert not session.busy


def test_stop_ends_the_reply_and_errors_come_back_as_signals(qtbot, worker):
    session = ChatSession(worker)
    request = GenerationRequest(prompt="Once upon a time", sampling=GREEDY, max_tokens=500)
    with qtbot.waitSignal(session.sig_reply_finished, timeout=60_000) as finished:
        session.send(request)
        qtbot.waitSignal(session.sig_text_received, timeout=30_000).wait()
        session.stop()
    assert finished.args[0].reason == "cancelled" and finished.args[0].stats.completion_tokens < 500
    with qtbot.waitSignal(session.sig_reply_failed, timeout=30_000) as failed:
        session.send(GenerationRequest(prompt="word " * 3000, sampling=GREEDY, max_tokens=5))
    assert "context" in failed.args[0]
    with pytest.raises(RuntimeError, match="already"):
        session.send(request)
        session.send(request)
    session.stop()
    qtbot.waitUntil(lambda: not session.busy, timeout=30_000)


def test_many_signal_emits_do_not_abort_the_process():
    """PySide6 6.12.0 aborts at interpreter exit after ~50 emits of a Python Signal (pyproject pins it out)."""
    import subprocess
    import sys

    script = (
        "from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
        "class S(QObject):\n    sig = Signal(str)\n"
        "app = QCoreApplication([])\ns = S()\ngot = []\ns.sig.connect(lambda t: got.append(t))\n"
        "for _ in range(300):\n    s.sig.emit('x')\nprint(len(got))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0 and r.stdout.strip() == "300", (r.returncode, r.stderr[-500:])
