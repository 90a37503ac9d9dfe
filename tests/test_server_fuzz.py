"""Fuzzing the endpoint from its own OpenAPI schema (schemathesis strategies, hypothesis): never a 5xx.

The model gets a 128-token context (llama.cpp makes it 256), so no fuzzed request keeps the engine busy long.
"""
from __future__ import annotations

import re
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from app.server.api import ServerSettings, create_app
from app.server.service import ModelService, default_opener
from runtimes.runtime import LoadOptions

MODEL = "smollm2-135m-instruct"
REFUSED = ("audio", "function_call", "functions", "logprobs", "metadata", "modalities", "prediction", "reasoning_effort",
           "response_format", "service_tier", "store", "tool_choice", "tools", "top_logprobs", "web_search_options",
           "logit_bias", "n", "stream_options", "echo", "suffix", "best_of", "stop", "chat_template_kwargs",
           "parallel_tool_calls")


@pytest.fixture(scope="module")
def fuzz_schema():
    service = ModelService(MODEL, models=lambda: [MODEL], max_queue=4,
                           open_worker=default_opener(options=LoadOptions(n_ctx=128)))
    deadline = time.monotonic() + 120
    while service.status == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.status == "ready"
    from embedding_model import minilm_gguf

    embedder = minilm_gguf()
    app = create_app(service, ServerSettings(max_body_bytes=64 << 10, allowed_hosts=("testserver",),  # the test
                                             embedding_models=lambda: {"minilm": embedder}))  # client's Host
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.embeddings.close()
    service.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/messages",
                                  "/v1/messages/count_tokens", "/v1/responses", "/v1/embeddings", "/v1/models",
                                  "/health"])
def test_no_fuzzed_request_makes_a_server_error(fuzz_schema, path):
    operations = [r.ok() for r in fuzz_schema.get_all_operations() if r.ok().path == path]
    assert operations, f"{path} is missing from the OpenAPI schema"
    seen, calls = [], []

    @given(case=operations[0].as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        calls.append(1)
        steer = isinstance(case.body, dict) and path in GOOD and len(calls) % 2
        if steer:  # half the requests are steered to the engine: the real model, no fields refused up front
            case.body["model"] = "minilm" if path == "/v1/embeddings" else MODEL
            for name in REFUSED:
                case.body.pop(name, None)
            if "messages" in case.body:  # tool messages must answer a call: fuzzed ones rarely do
                case.body["messages"] = GOOD[path]["messages"]
        response = _call(case)
        # A steered request the server refuses loses the field it names (or, for a field it needs, gets a good
        # value) and goes again: the fuzzed values that are valid reach the engine, whatever hypothesis drew.
        for _ in range(len(case.body) + len(GOOD.get(path, ())) + 2 if steer else 0):
            if response.status_code != 400:
                break
            _mend(case.body, path, response.json())
            response = _call(case)
        seen.append(response.status_code)

    check()
    generating = any(word in path for word in ("completions", "messages", "responses", "embeddings"))
    assert len(seen) >= (10 if generating else 1)
    if generating:  # some fuzzed requests were valid and ran on the model
        assert 200 in seen, sorted(set(seen))


# What each generating path needs to reach the engine; a steered request gets these when its own are refused
GOOD = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"prompt": "Hi"},
    "/v1/messages": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/responses": {"input": "Hi"},
    "/v1/embeddings": {"input": "Hi"},
}


def _call(case):
    response = case.call(timeout=120)  # a valid request may generate up to the context (slow CI machines)
    assert response.status_code < 500, (case.body, response.status_code, response.text[:500])
    return response


def _mend(body: dict, path: str, answer: dict) -> None:
    """Take away the field a 400 names (OpenAI's `param`, or a field named in Anthropic's message)."""
    error = answer.get("error") or {}
    named = str(error.get("param") or "")
    top = re.split(r"[.\[]", named, maxsplit=1)[0] if named else ""
    if top not in body:
        words = set(re.findall(r"[A-Za-z_]+", str(error.get("message", ""))))
        top = next((k for k in body if k in words and k != "model"), "")
    if not top or top == "model":  # nothing named: drop the last optional field, else make the needed ones good
        optional = [k for k in body if k != "model" and k not in GOOD[path]]
        if optional:
            top = optional[-1]
        else:
            body.update(GOOD[path])
            return
    if top in GOOD[path]:
        body[top] = GOOD[path][top]
    else:
        body.pop(top)
