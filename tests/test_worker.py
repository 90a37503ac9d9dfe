"""The engine thread: requests in order, cancel within a step, errors carried to the caller."""
from __future__ import annotations

import pytest

from app.wiring import start_worker
from basics.errors import InvalidRequestError, ModelLoadError
from engine.events import GenerationRequest, TextDelta
from engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


def test_cancel_stops_the_stream_within_a_step(worker):
    gen = worker.submit(GenerationRequest(prompt="Write a long story.", sampling=GREEDY, max_tokens=500))
    seen_after_cancel, final = 0, None
    for event in gen:
        if isinstance(event, TextDelta):
            if gen.cancelled:
                seen_after_cancel += 1
            elif event.text:
                gen.cancel()
        else:
            final = event
    assert final.reason == "cancelled"
    assert seen_after_cancel <= 1
    assert final.stats.completion_tokens < 20
    # the next request runs at once, on a consistent cache
    text, fin = worker.submit(GenerationRequest(prompt="Hello", sampling=GREEDY, max_tokens=3)).text()
    assert fin.reason == "length" and fin.stats.completion_tokens == 3


def test_requests_run_in_submission_order_and_errors_reach_the_caller(worker):
    a = worker.submit(GenerationRequest(prompt="One", sampling=GREEDY, max_tokens=2))
    bad = worker.submit(GenerationRequest(messages=[]))
    c = worker.submit(GenerationRequest(prompt="Three", sampling=GREEDY, max_tokens=2))
    assert a.text()[1].reason == "length"
    with pytest.raises(InvalidRequestError):
        bad.text()
    assert c.text()[1].stats.completion_tokens == 2
    assert worker.call(lambda engine: engine.runtime.n_ctx).result(10) == 1024


def test_a_load_failure_is_reported_and_requests_fail_cleanly(tmp_path):
    w = start_worker(tmp_path / "missing.gguf")
    try:
        with pytest.raises(ModelLoadError, match="not found"):
            w.wait_ready(30)
        with pytest.raises(ModelLoadError, match="No model"):
            w.submit(GenerationRequest(prompt="x")).text()
    finally:
        w.close()


def test_a_call_or_request_after_close_ends_at_once_with_a_reason():
    from engine.worker import EngineWorker

    class Engine:
        def close(self):
            pass

    worker = EngineWorker(Engine)
    assert worker.call(lambda e: 42).result(timeout=30) == 42
    worker.close()
    with pytest.raises(ModelLoadError, match="unloaded"):  # never a wait for a thread that is gone
        worker.call(lambda e: 1).result(timeout=5)
    with pytest.raises(ModelLoadError, match="unloaded"):
        list(worker.submit(GenerationRequest(prompt="hi")))
