"""Anthropic's Messages API on the real endpoint and the real starter model, with the official `anthropic` client:
text the same as chat completions, its stream helpers, stop sequences, tools over three rounds on the KV cache,
thinking blocks out and back, count_tokens, the key as x-api-key, and errors in Anthropic's shape."""
from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from agent_models import family_models, start_server

WEATHER = {"name": "get_weather", "description": "The current weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
GREEDY = {"extra_body": {"temperature": 0}}  # older clients send it; the SDK of 2026 no longer has the argument


@pytest.fixture(scope="module")
def servers(smollm2_path, tmp_path_factory):
    paths = family_models(smollm2_path, tmp_path_factory.mktemp("families"), names=["smol-own", "smol-hermes",
                                                                                    "smol-r1"])
    started = {name: start_server({name: path}) for name, path in paths.items()}
    yield started
    for s in started.values():
        s.stop()


def client(servers, name: str, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=servers[name].base_url.removesuffix("/v1"), api_key=kw.pop("api_key", "x"),
                               max_retries=0, timeout=300, **kw)


def test_a_reply_is_the_chat_completion_reply_streamed_and_not(servers):
    c = client(servers, "smol-own")
    args = dict(model="smol-own", max_tokens=24, **GREEDY, system="You are terse.",
                messages=[{"role": "user", "content": "Name three colours."}])
    r = c.messages.create(**args)
    assert r.type == "message" and r.role == "assistant" and r.id.startswith("msg_")
    assert [b.type for b in r.content] == ["text"] and r.stop_reason in ("end_turn", "max_tokens")
    same = openai.OpenAI(base_url=servers["smol-own"].base_url, api_key="x").chat.completions.create(
        model="smol-own", max_tokens=24, temperature=0,
        messages=[{"role": "system", "content": "You are terse."}, *args["messages"]])
    assert r.content[0].text == same.choices[0].message.content  # one engine under both APIs
    prompt = same.usage.prompt_tokens
    assert r.usage.input_tokens + r.usage.cache_read_input_tokens == prompt and r.usage.output_tokens >= 1
    with c.messages.stream(**args) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == r.content[0].text and final.content[0].text == streamed
    assert final.stop_reason == r.stop_reason and final.usage.output_tokens == r.usage.output_tokens
    assert final.usage.cache_read_input_tokens >= prompt - 2  # the same prompt again: read from the cache
    counted = c.messages.count_tokens(model="smol-own", system="You are terse.", messages=args["messages"])
    assert counted.input_tokens == prompt  # what the reply's usage reports


def test_a_stop_sequence_ends_the_reply_and_is_named(servers):
    c = client(servers, "smol-own")
    args = dict(model="smol-own", max_tokens=40, **GREEDY, messages=[{"role": "user",
                                                                            "content": "Count from 1 to 20."}])
    text = c.messages.create(**args).content[0].text
    words = text.split()
    assert len(words) > 4, text
    stop = words[3]
    r = c.messages.create(stop_sequences=[stop], **args)
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == stop
    assert stop not in r.content[0].text and text.startswith(r.content[0].text)


def test_raw_events_come_in_anthropic_order(servers):
    root = servers["smol-own"].base_url.removesuffix("/v1")
    body = {"model": "smol-own", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream("POST", root + "/v1/messages", json=body, timeout=300) as r:
        lines = [line for line in r.iter_lines() if line]
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")]
    data = [json.loads(line.split(": ", 1)[1]) for line in lines if line.startswith("data: ")]
    assert [d["type"] for d in data] == events  # each event's name is its data's type
    assert events[:3] == ["message_start", "ping", "content_block_start"] and events[-2:] == ["message_delta",
                                                                                            "message_stop"]
    assert set(events[3:-3]) == {"content_block_delta"} and events[-3] == "content_block_stop"
    assert data[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens") and data[-2]["usage"]["output_tokens"]


def test_tools_over_three_rounds_reuse_the_whole_earlier_prompt(servers):
    c = client(servers, "smol-hermes")
    messages = list(ASK)
    usages = []
    for round_ in range(3):
        choice = {"type": "any", "disable_parallel_tool_use": True} if round_ < 2 else {"type": "none"}
        args = dict(model="smol-hermes", max_tokens=80, **GREEDY, system="You are a weather agent. " * 20,
                    tools=[WEATHER], tool_choice=choice, messages=messages)
        if round_ == 1:  # one round streamed: the tool call arrives as input_json_delta events
            with c.messages.stream(**args) as stream:
                r = stream.get_final_message()
        else:
            r = c.messages.create(**args)
        usages.append(r.usage)
        if round_ < 2:
            assert r.stop_reason == "tool_use"
            use = next(b for b in r.content if b.type == "tool_use")
            assert use.name == "get_weather" and isinstance(use.input.get("city"), str) and use.id
            messages = [*messages, {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                                     for b in r.content]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                      "content": json.dumps({"temperature_c": 21 + round_})}]}]
        else:
            assert r.stop_reason != "tool_use" and all(b.type == "text" for b in r.content)
    for before, after in zip(usages, usages[1:]):
        # the earlier prompt and the call the model wrote are in the cache: only the tool result is new
        assert after.cache_read_input_tokens >= before.input_tokens + before.cache_read_input_tokens + \
            before.output_tokens - 1, (before, after)


def test_thinking_comes_as_thinking_blocks_and_goes_back_in_the_history(servers):
    c = client(servers, "smol-r1")
    args = dict(model="smol-r1", max_tokens=24, **GREEDY, thinking={"type": "enabled", "budget_tokens": 16},
                messages=[{"role": "user", "content": "What is 2+2?"}])
    r = c.messages.create(**args)
    thought = next(b for b in r.content if b.type == "thinking")
    assert thought.thinking
    with c.messages.stream(**args) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "thinking_delta" in kinds and final.content[0].thinking == thought.thinking
    follow = [*args["messages"], {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                                   for b in r.content]},
              {"role": "user", "content": "And 3+3?"}]
    again = c.messages.create(**{**args, "messages": follow})
    assert again.usage.cache_read_input_tokens >= r.usage.input_tokens + r.usage.cache_read_input_tokens - 4


@pytest.mark.parametrize("body, field", [
    ({"messages": ASK, "max_tokens": 8, "frobnicate": 1}, "frobnicate"),
    ({"messages": ASK}, "max_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}], "max_tokens": 8}, "image"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}],
      "max_tokens": 8}, "nope"),
    ({"messages": ASK, "max_tokens": 8, "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"messages": ASK, "max_tokens": 8, "thinking": {"type": "enabled", "budget_tokens": 8}}, "budget_tokens"),
    ({"messages": ASK, "max_tokens": 8, "temperature": 1.5}, "temperature"),
])
def test_bad_requests_get_anthropic_errors_naming_the_field(servers, body, field):
    c = client(servers, "smol-own")
    with pytest.raises(anthropic.BadRequestError) as e:
        c.post("/v1/messages", body={"model": "smol-own", **body}, cast_to=httpx.Response)
    assert e.value.status_code == 400 and e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error" and field in e.value.body["error"]["message"]


def test_an_unknown_model_and_a_wrong_key_are_anthropic_errors(servers, smollm2_path):
    c = client(servers, "smol-own")
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="nobody", max_tokens=4, messages=ASK)
    assert e.value.body["error"]["type"] == "not_found_error"
    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService
    from app.wiring import start_worker
    from runtimes.runtime import LoadOptions

    service = ModelService("smol", models=lambda: ["smol"],
                           open_worker=lambda _n: start_worker(smollm2_path, options=LoadOptions(n_ctx=1024)))
    server = LanternServer(service, ServerSettings(port=0, api_key="secret")).start()
    try:
        root = server.base_url.removesuffix("/v1")
        keyed = anthropic.Anthropic(base_url=root, api_key="secret", max_retries=5, timeout=300)
        assert keyed.messages.create(model="smol", max_tokens=4, messages=ASK).content  # sent as x-api-key
        with pytest.raises(anthropic.AuthenticationError) as e:
            anthropic.Anthropic(base_url=root, api_key="wrong", max_retries=0).messages.create(
                model="smol", max_tokens=4, messages=ASK)
        assert e.value.body["error"]["type"] == "authentication_error"
    finally:
        server.stop()


def test_newer_fields_structured_output_effort_and_omitted_thinking(servers):
    import jsonschema

    c = client(servers, "smol-own")
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}}, "required": ["colour"],
              "additionalProperties": False}
    r = c.messages.create(model="smol-own", max_tokens=40, **GREEDY, messages=[
        {"role": "user", "content": "Pick a colour."}], output_config={"format": {"type": "json_schema",
                                                                                    "schema": schema},
                                                                         "effort": "xhigh"},
        cache_control={"type": "ephemeral"}, speed="standard")
    jsonschema.validate(json.loads(r.content[0].text), schema)  # constrained, as response_format is
    r1 = client(servers, "smol-r1")
    hidden = r1.messages.create(model="smol-r1", max_tokens=24, **GREEDY, messages=[
        {"role": "user", "content": "What is 2+2?"}], thinking={"type": "adaptive", "display": "omitted"})
    block = next(b for b in hidden.content if b.type == "thinking")
    assert block.thinking == ""  # thought, but not shown
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="smol-own", max_tokens=4, messages=ASK, speed="fast")
    assert "speed" in e.value.body["error"]["message"]


def test_the_model_may_be_left_out_and_count_tokens_counts_tools(servers):
    root = servers["smol-hermes"].base_url.removesuffix("/v1")
    r = httpx.post(root + "/v1/messages", json={"max_tokens": 4, "messages": ASK, "tools": [WEATHER]},
                   timeout=300).json()
    assert r["model"] == "smol-hermes" and r["type"] == "message"  # the loaded model answered
    counted = httpx.post(root + "/v1/messages/count_tokens", json={"messages": ASK, "tools": [WEATHER]},
                         timeout=300).json()
    plain = httpx.post(root + "/v1/messages/count_tokens", json={"messages": ASK}, timeout=300).json()
    assert counted["input_tokens"] == r["usage"]["input_tokens"] + r["usage"]["cache_read_input_tokens"]
    assert counted["input_tokens"] > plain["input_tokens"] + 20  # the tools' descriptions are in the prompt


def test_a_streamed_message_starts_with_the_prompts_real_count(servers):
    """message_start carries the prompt's input_tokens, as Anthropic's API sends them (issue 32: it sent 0)."""
    root = servers["smol-own"].base_url.removesuffix("/v1")
    messages = [{"role": "user", "content": "Tell me about the sea in a few words, please."}]
    counted = client(servers, "smol-own").messages.count_tokens(model="smol-own", messages=messages).input_tokens
    body = {"model": "smol-own", "max_tokens": 4, "stream": True, "messages": messages}
    with httpx.stream("POST", root + "/v1/messages", json=body, timeout=300) as r:
        start = next(json.loads(line.split(": ", 1)[1]) for line in r.iter_lines() if line.startswith("data: "))
    usage = start["message"]["usage"]
    assert start["type"] == "message_start" and usage["output_tokens"] == 0
    assert usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) == counted > 0


def test_blocks_sent_back_as_the_sdk_dumps_them_are_accepted(servers):
    """An agent returns the reply's blocks as the SDK dumps them (model_dump): every field the API defines, null
    where it is optional, is accepted (issue 32: `caller` was refused with 400)."""
    c = client(servers, "smol-hermes")
    args = dict(model="smol-hermes", max_tokens=80, **GREEDY, tools=[WEATHER],
                tool_choice={"type": "any", "disable_parallel_tool_use": True})
    r = c.messages.create(messages=ASK, **args)
    call = next(b for b in r.content if b.type == "tool_use")
    dumped = [b.model_dump() for b in r.content]
    assert "caller" in dumped[[b.type for b in r.content].index("tool_use")]  # the SDK's own field, sent back
    history = [*ASK, {"role": "assistant", "content": dumped},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny",
                                             "toolset_name": None, "cache_control": None}]}]
    again = c.messages.create(messages=history, **{**args, "tool_choice": {"type": "none"}})
    assert again.content and again.content[0].type == "text"


def test_the_accepted_block_fields_cover_the_sdks_block_types():
    """Every field the installed anthropic SDK defines on a block kind Lantern takes is accepted (a newer SDK's
    new field fails here by name, not in an agent's hands)."""
    import anthropic.types as t

    from app.server.messages_request import DEFINED_UNUSED_FIELDS, IGNORED_BLOCK_FIELDS

    used = {"text": {"text"}, "tool_use": {"id", "name", "input"}, "thinking": {"thinking", "signature"},
            "redacted_thinking": {"data"}, "tool_result": {"tool_use_id", "content", "is_error"},
            "image": {"source"}}
    for kind, models in {"text": [t.TextBlock, t.TextBlockParam], "tool_use": [t.ToolUseBlock, t.ToolUseBlockParam],
                         "thinking": [t.ThinkingBlock, t.ThinkingBlockParam],
                         "redacted_thinking": [t.RedactedThinkingBlock, t.RedactedThinkingBlockParam],
                         "tool_result": [t.ToolResultBlockParam], "image": [t.ImageBlockParam]}.items():
        for model in models:
            fields = set(getattr(model, "model_fields", None) or model.__annotations__) - {"type"}
            unknown = fields - used[kind] - IGNORED_BLOCK_FIELDS - DEFINED_UNUSED_FIELDS.get(kind, set())
            assert unknown == set(), (kind, model.__name__, unknown)
