"""The OpenAI-compatible endpoint: a real server on a free port, the official `openai` client, plain HTTP."""
from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from app.server.api import ServerSettings
from app.server.run import LanternServer, UnsafeBind, check_bind
from app.server.service import ModelService, default_opener
from models.registry import BUILTIN_MODELS
from runtimes.runtime import LoadOptions

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def start(**settings) -> LanternServer:
    service = ModelService(MODEL, models=lambda: list(BUILTIN_MODELS), max_queue=settings.pop("max_queue", 16),
                           open_worker=default_opener(options=LoadOptions(n_ctx=2048)),
                           idle_unload_s=settings.pop("idle_unload_s", None))
    server = LanternServer(service, ServerSettings(port=0, **settings)).start()
    deadline = time.monotonic() + 120
    while httpx.get(root(server) + "/health").json()["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def root(server: LanternServer) -> str:
    return server.base_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def server():
    s = start()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_chat_streamed_and_not_give_the_same_reply_with_usage(client):
    # Seeded: the same reply whatever the timing (unseeded greedy may part at a near tie when prompt lookup drafts
    # differently on a busy machine).
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=12, seed=1)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant" and text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 12 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}, seed=1)
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        else:
            usage = chunk.usage
    assert "".join(parts) == text and finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens
    # the same prompt again: all of it comes from the cache (its last logits were kept with it)
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens


def test_a_second_turn_reports_cached_tokens(client):
    first = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}],
                                           temperature=0, max_tokens=8)
    turn2 = [{"role": "user", "content": "Name a fruit."},
             {"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "Another one."}]
    second = client.chat.completions.create(model=MODEL, messages=turn2, temperature=0, max_tokens=4)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens


def test_raw_completions_streamed_and_not(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=6)
    assert r.object == "text_completion" and r.usage.completion_tokens <= 6
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=6, stream=True))
    assert streamed == r.choices[0].text and "Paris" in streamed


def test_stop_and_seed(client):
    full = client.completions.create(model=MODEL, prompt="Monday, Tuesday, Wednesday,", temperature=0,
                                     max_tokens=8).choices[0].text
    assert "Thursday" in full
    cut = client.completions.create(model=MODEL, prompt="Monday, Tuesday, Wednesday,", temperature=0, max_tokens=8,
                                    stop=["ursd"])
    assert cut.choices[0].text == full[: full.index("ursd")] and cut.choices[0].finish_reason == "stop"
    story = dict(model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}], temperature=1.0,
                 max_tokens=16)
    a = client.chat.completions.create(seed=42, **story).choices[0].message.content
    b = client.chat.completions.create(seed=42, **story).choices[0].message.content
    c = client.chat.completions.create(seed=43, **story).choices[0].message.content
    assert a == b and a != c


def test_an_image_part_to_a_model_without_a_projector_says_it_cannot_see(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert "cannot see images" in str(e.value) and "without a vision projector" in str(e.value)


@pytest.mark.parametrize("extra,param", [
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]),
     "tools[0].function.parameters"),
    (dict(tools=[{"type": "function", "function": {"name": "f/../x"}}]), "tools.0.function.name"),
    (dict(response_format={"type": "xml"}), "response_format.type"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}),
     "response_format.json_schema.schema"),
    (dict(tool_choice={"type": "function", "function": {"name": "missing"}},
          tools=[{"type": "function", "function": {"name": "f"}}]), "tool_choice"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(messages=[{"role": "user", "content": "hi"}, {"role": "tool", "content": "x", "tool_call_id": "1"}]),
     "messages[1].tool_call_id"),
    (dict(messages=[{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
     "messages[0].tool_calls[0].function.arguments"),
    (dict(chat_template_kwargs={"not a name": 1}), "chat_template_kwargs"),
    (dict(reasoning_effort="extreme"), "reasoning_effort"),
    (dict(top_logprobs=3), "top_logprobs"),  # without logprobs: true
    (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
    (dict(n=0), "n"),
    (dict(logit_bias={"one": 5}), "logit_bias"),
    (dict(logit_bias={"1": 500}), "logit_bias"),
    (dict(logit_bias={"99999999": 5}), "logit_bias"),  # past the vocabulary
    (dict(frobnicate=1), "frobnicate"),
    (dict(temperature=3), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
     "messages[0].content"),
    (dict(messages=[{"role": "function", "content": "x"}]), "messages.0.role"),
    (dict(messages=[]), "messages"),
    (dict(n_probs=5), "n_probs"),
])
def test_unsupported_or_bad_fields_are_a_400_that_names_them(server, extra, param):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 2, **extra}
    r = httpx.post(server.base_url + "/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error" and err["message"]


def test_fields_clients_send_by_habit_are_accepted_and_the_model_may_be_left_out(server, client):
    habits = dict(cache_prompt=True, keep_alive="5m", n_probs=0, parallel_tool_calls=True)  # no tools
    greedy = dict(messages=QUESTION, max_tokens=6, temperature=0)
    plain = client.chat.completions.create(model=MODEL, **greedy)
    r = httpx.post(server.base_url + "/chat/completions", json={**greedy, **habits}, timeout=120)  # no model named
    assert r.status_code == 200, r.text
    assert r.json()["model"] == MODEL and r.json()["choices"][0]["message"]["content"] == \
        plain.choices[0].message.content  # the same reply: nothing was asked that changes it


def test_model_errors_context_overflow_and_bodies(server, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="never a file path"):
        client.chat.completions.create(model="/etc/passwd", messages=QUESTION)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 3000}])
    assert e.value.body["code"] == "context_length_exceeded"
    url = server.base_url + "/chat/completions"
    assert httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(url, json=[1, 2]).status_code == 400
    big = httpx.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "x" * (5 << 20)}]})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server.base_url + "/nothing-here").status_code == 404
    models = client.models.list().data
    assert {m.id for m in models} == set(BUILTIN_MODELS)
    assert [m.id for m in models if m.model_extra.get("loaded")] == [MODEL]


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(server, client):
    with httpx.stream("POST", server.base_url + "/chat/completions", timeout=120,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
                            "max_tokens": 1500, "temperature": 0, "stream": True}) as r:
        lines = 0
        for line in r.iter_lines():
            lines += line.startswith("data: ")
            if lines >= 3:
                break  # leaving the block closes the connection
    deadline = time.monotonic() + 60
    while server.service.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.service.in_flight == 0
    cached = server.service.engine_call(lambda e: len(e.cached_tokens)).result(30)
    assert cached < 200, "the generation ran on after the client left"
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=2)
    assert r.usage.completion_tokens >= 1


def test_twenty_clients_at_once_complete_or_get_429(server):
    busy = start(max_queue=3)
    try:
        results: list[object] = []

        def one(i: int) -> None:
            c = openai.OpenAI(base_url=busy.base_url, api_key="unused", max_retries=0, timeout=120)
            try:
                r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Count to {i}."}],
                                              temperature=0, max_tokens=8)
                results.append(r.choices[0].finish_reason)
            except openai.RateLimitError as e:
                results.append(e.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert len(results) == 20
        assert set(results) <= {"stop", "length", 429}
        assert 429 in results and any(r != 429 for r in results)
        assert httpx.get(root(busy) + "/health").json()["status"] == "ready"
    finally:
        busy.stop()


def test_an_api_key_is_required_when_set_and_health_stays_open():
    s = start(api_key="s3cret")
    try:
        url = s.base_url + "/models"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(root(s) + "/health").status_code == 200
        c = openai.OpenAI(base_url=s.base_url, api_key="s3cret", max_retries=0)
        assert c.completions.create(model=MODEL, prompt="Hi", max_tokens=1).usage.completion_tokens == 1
    finally:
        s.stop()


def test_cors_is_off_by_default_and_only_for_given_origins(server):
    r = httpx.get(server.base_url + "/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    s = start(cors_origins=("https://app.example",))
    try:
        ok = httpx.options(s.base_url + "/chat/completions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example"
        evil = httpx.get(s.base_url + "/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
    finally:
        s.stop()


def test_binding_beyond_loopback_needs_a_key_or_insecure(capsys):
    check_bind(ServerSettings(host="127.0.0.1"))
    check_bind(ServerSettings(host="::1"))
    with pytest.raises(UnsafeBind, match="API key"):
        check_bind(ServerSettings(host="0.0.0.0"))
    check_bind(ServerSettings(host="0.0.0.0", api_key="k"))
    check_bind(ServerSettings(host="0.0.0.0", insecure=True))
    assert "WARNING" in capsys.readouterr().err


def test_requests_while_the_model_loads_wait_for_it_within_a_bound():
    from app.wiring import open_runtime, plan_load
    from engine.engine import Engine
    from engine.worker import EngineWorker

    gate = threading.Event()

    def slow_open(name: str) -> EngineWorker:
        def make() -> Engine:
            gate.wait(60)  # the load finishes when the test says so
            plan = plan_load(name, options=LoadOptions(n_ctx=1024))
            return Engine(open_runtime(plan), backend=plan.label, backend_reason=plan.reason)

        return EngineWorker(make)

    service = ModelService(MODEL, models=lambda: list(BUILTIN_MODELS), open_worker=slow_open)
    server = LanternServer(service, ServerSettings(port=0, load_wait_s=0.5)).start()
    patient = LanternServer(service, ServerSettings(port=0)).start()  # the default bound, on the same model
    try:
        c = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        health = httpx.get(root(server) + "/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"  # not ready: probes wait
        with pytest.raises(openai.InternalServerError) as e:  # past the bound: 503 with Retry-After
            c.completions.create(model=MODEL, prompt="Hi", max_tokens=1)
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"]
        waited = []
        waiting = threading.Thread(target=lambda: waited.append(httpx.post(
            patient.base_url + "/completions", json={"prompt": "Hi", "max_tokens": 1}, timeout=120).json()))
        # (no model named: the loaded one answers)
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and not waited  # waiting for the load, not refused
        gate.set()
        waiting.join(60)
        assert waited and waited[0]["usage"]["completion_tokens"] == 1 and waited[0]["model"] == MODEL
        assert httpx.get(root(server) + "/health").status_code == 200
        gate.set()
        deadline = time.monotonic() + 60
        while service.status == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.completions.create(model=MODEL, prompt="Hi", max_tokens=1).usage.completion_tokens == 1
        # another model by name: this request waits for its load, and runs on it
        c = openai.OpenAI(base_url=patient.base_url, api_key="unused", max_retries=0)
        r = c.completions.create(model="gemma3-270m", prompt="The capital of France is", max_tokens=3, temperature=0)
        assert r.model == "gemma3-270m" and service.model == "gemma3-270m" and r.usage.completion_tokens >= 1
        assert [m.id for m in c.models.list().data if m.model_extra.get("loaded")] == ["gemma3-270m"]
    finally:
        server.stop()
        patient.stop()


def test_logit_bias_forces_and_bans_tokens_greedy_and_sampled(server, client):
    """OpenAI's logit_bias (issue 32: refused with 400): +100 all but forces a token, -100 bans it; with prompt lookup
    drafting (the default) too, since every verified row goes through the same biased sampler."""
    from runtimes.llamacpp import LlamaCppRuntime
    from models.library import resolve_model

    rt = LlamaCppRuntime(resolve_model(MODEL), LoadOptions(n_ctx=256))
    try:
        banana = rt.tokenize(" banana", add_bos=False, parse_special=False)
        assert len(banana) == 1
        plain = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=1,
                                          temperature=0).choices[0].text
        first = rt.tokenize(plain, add_bos=False, parse_special=False)[0]
    finally:
        rt.close()
    for temperature in (0, 1):
        forced = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4,
                                           temperature=temperature, seed=7, logit_bias={str(banana[0]): 100})
        assert forced.choices[0].text == " banana" * 4
    banned = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=1, temperature=0,
                                       logit_bias={str(first): -100}).choices[0].text
    assert banned and banned != plain


def test_a_completion_prompt_may_be_token_ids(server, client):
    """OpenAI's completions take token ids as the prompt (evaluation harnesses send them; issue 32: a 400): the same
    ids as the text's give the same greedy reply, and an id past the vocabulary is a 400 naming it."""
    from runtimes.llamacpp import LlamaCppRuntime
    from models.library import resolve_model

    rt = LlamaCppRuntime(resolve_model(MODEL), LoadOptions(n_ctx=256))
    try:
        ids = rt.tokenize("The capital of France is", add_bos=rt.special.add_bos, parse_special=False)
        n_vocab = rt.n_vocab
    finally:
        rt.close()
    text = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0)
    for prompt in (ids, [ids]):
        by_ids = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0)
        assert by_ids.choices[0].text == text.choices[0].text
        assert by_ids.usage.prompt_tokens == text.usage.prompt_tokens == len(ids)
    r = httpx.post(server.base_url + "/completions", json={"model": MODEL, "prompt": [1, n_vocab], "max_tokens": 2})
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"], r.text


def test_embeddings_of_token_arrays_from_the_loaded_chat_model_when_no_model_is_named(server):
    """Clients of llama-server send token arrays and no model name; with no embedding model here, the loaded chat
    model's pooled states answer (issue 32: a 400)."""
    for body in ({"input": [1, 2, 3]}, {"input": [[1, 2, 3], [4, 5]]}, {"input": "plain text"}):
        r = httpx.post(server.base_url + "/embeddings", json=body, timeout=120)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert len(data) == (2 if isinstance(body["input"][0], list) else 1) and len(data[0]["embedding"]) > 100


def test_chat_logprobs_streamed_and_not_with_the_likeliest_tokens(client):
    """logprobs with top_logprobs (issue 32: a 400): one entry per produced token, its bytes, and the likeliest of
    the distribution it was drawn from; the same figures streamed and not."""
    args = dict(model=MODEL, messages=QUESTION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    r = client.chat.completions.create(**args)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(c.token for c in content) == r.choices[0].message.content
    for c in content:
        assert c.logprob <= 0 and len(c.top_logprobs) == 3 and bytes(c.bytes).decode() == c.token
        assert c.top_logprobs[0].token == c.token and c.top_logprobs[0].logprob == c.logprob  # greedy: the likeliest
        assert [t.logprob for t in c.top_logprobs] == sorted((t.logprob for t in c.top_logprobs), reverse=True)
    streamed = [lp for chunk in client.chat.completions.create(stream=True, **args) for choice in chunk.choices
                if choice.logprobs is not None for lp in choice.logprobs.content]
    assert [(c.token, round(c.logprob, 5)) for c in streamed] == [(c.token, round(c.logprob, 5)) for c in content]
    plain = client.chat.completions.create(**{**args, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == r.choices[0].message.content


def test_completion_logprobs_of_a_sampled_reply_are_those_of_its_filtered_distribution(client):
    """Sampled: the distribution after temperature, top_k and the rest, so with top_k 4 the four likeliest hold all
    of it; the completions' shape (tokens, token_logprobs, top_logprobs, text_offset)."""
    import math

    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=1,
                                  seed=3, logprobs=4, extra_body={"top_k": 4, "top_p": 1, "min_p": 0})
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and len(lp.token_logprobs) == r.usage.completion_tokens
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert token in top and math.isclose(top[token], value, abs_tol=1e-9)
        assert math.isclose(sum(math.exp(v) for v in top.values()), 1.0, abs_tol=1e-6)


def test_n_choices_streamed_and_not(client):
    """n > 1 (issue 32: a 400): n replies to one prompt, choice i seeded seed + i, so choice 0 is the reply of n = 1;
    the prompt counted once, every choice's tokens summed."""
    args = dict(model=MODEL, messages=QUESTION, max_tokens=8, temperature=1, seed=11)
    one = client.chat.completions.create(**args)
    three = client.chat.completions.create(n=3, **args)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert three.choices[0].message.content == one.choices[0].message.content
    assert len({c.message.content for c in three.choices}) > 1  # different seeds, different replies
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens >= 3
    texts, finished = {0: "", 1: "", 2: ""}, set()
    usage = None
    for chunk in client.chat.completions.create(n=3, stream=True, stream_options={"include_usage": True}, **args):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finished.add(c.index)
        usage = chunk.usage or usage
    assert finished == {0, 1, 2} and [texts[i] for i in range(3)] == [c.message.content for c in three.choices]
    assert usage.completion_tokens == three.usage.completion_tokens
