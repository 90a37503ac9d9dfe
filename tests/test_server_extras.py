"""Beside the chat APIs, on the real endpoint and model: /tokenize and /detokenize round trips (hostile ids
refused, never a GGML abort), /metrics in Prometheus' text format with the API's key rules."""
from __future__ import annotations

import httpx
import openai
import pytest
from test_server import MODEL, QUESTION, root, start


@pytest.fixture(scope="module")
def server():
    s = start(api_key="k")
    yield s
    s.stop()


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(root(server) + path, json=body, headers={"Authorization": "Bearer k"}, timeout=120)


def test_tokenize_and_detokenize_round_trip(server):
    text = "Hello, wörld! <|im_start|>"
    ids = post(server, "/tokenize", {"content": text}).json()["tokens"]
    assert all(isinstance(t, int) for t in ids) and len(ids) > 3
    pieces = post(server, "/tokenize", {"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == ids and "".join(p["piece"] for p in pieces) == text
    assert post(server, "/detokenize", {"tokens": ids}).json()["content"] == text
    with_bos = post(server, "/tokenize", {"content": text, "add_special": True}).json()["tokens"]
    assert with_bos[-len(ids):] == ids  # the model's BOS first, where it has one
    for bad in ([-1], [10 ** 9], [2 ** 63]):
        r = post(server, "/detokenize", {"tokens": bad})
        assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"], r.text
    assert post(server, "/detokenize", {"tokens": ids}).status_code == 200  # and the server lives on


def test_metrics_count_requests_tokens_and_reuse(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=120)
    for _ in range(2):
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    # a client's prediction of the reply it got before: drafts from the prediction, counted by source
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0,
                                   prediction={"type": "content", "content": reply.choices[0].message.content})
    assert httpx.get(root(server) + "/metrics").status_code == 401  # the API's key rules
    text = httpx.get(root(server) + "/metrics", headers={"Authorization": "Bearer k"}).text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values['lantern_requests_total{method="POST",path="/v1/chat/completions",status="200"}'] >= 2
    assert values['lantern_requests_total{method="GET",path="/metrics",status="401"}'] >= 1
    assert values["lantern_completion_tokens_total"] >= 2 and values["lantern_prompt_tokens_total"] > 0
    assert 0 < values["lantern_kv_reuse_ratio"] <= 1  # the second request reused the first's prompt
    assert values["lantern_time_to_first_token_seconds_count"] >= 2
    assert values['lantern_time_to_first_token_seconds_bucket{le="+Inf"}'] == \
        values["lantern_time_to_first_token_seconds_count"]
    drafted = {k: v for k, v in values.items() if k.startswith("lantern_draft_tokens_total{")}
    accepted = {k: v for k, v in values.items() if k.startswith("lantern_draft_accepted_tokens_total{")}
    assert values['lantern_draft_tokens_total{source="prediction"}'] > 0
    assert 0 < values['lantern_draft_accepted_tokens_total{source="prediction"}'] <= \
        values['lantern_draft_tokens_total{source="prediction"}']
    assert sum(drafted.values()) == values["lantern_drafted_tokens_total"]
    assert sum(accepted.values()) == values["lantern_accepted_tokens_total"]
    assert values["lantern_queue_depth"] == 0 and values[f'lantern_model_ready{{model="{MODEL}"}}'] == 1
    for line in text.splitlines():  # every sample is a well-formed Prometheus line
        assert line.startswith("#") or line.startswith("lantern_"), line


def test_models_list_context_kind_and_capabilities(server):
    data = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer k"}).json()["data"]
    smol = next(m for m in data if m["id"] == MODEL)
    assert smol["loaded"] and smol["context_length"] == 8192 and smol["kind"] == "chat"
    assert smol["quantization"] == "Q4_1" and smol["chat_template"] is True
    assert smol["capabilities"] == {"tools": True, "tool_format": "generic", "reasoning": False, "vision": False}
    gemma = next(m for m in data if m["id"] == "gemma3-270m")
    assert gemma["chat_template"] is False and gemma["context_length"] == 32768 and not gemma["loaded"]


def test_an_idle_model_unloads_and_the_next_request_loads_it_again():
    import time

    s = start(idle_unload_s=1.0)
    try:
        client = openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0, timeout=120)
        first = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, temperature=0)
        deadline = time.monotonic() + 60
        while s.service.status != "unloaded" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.service.status == "unloaded" and s.service._worker is None  # its memory given back
        health = httpx.get(root(s) + "/health")
        assert health.status_code == 200 and health.json() == {"status": "unloaded", "model": MODEL}
        again = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, temperature=0)
        assert again.choices[0].message.content == first.choices[0].message.content  # loaded again, same reply
        assert s.service.status == "ready"
    finally:
        s.stop()
