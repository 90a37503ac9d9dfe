"""Agents and editors on the endpoint, with the official openai client: tool calls in every family's format,
each tool_choice, parallel calls, a three-round agent loop on the KV cache, structured outputs validated with
jsonschema, reasoning split, and predicted outputs."""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from agent_models import family_models, start_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "description": "an IANA zone"}},
                   "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
FAMILIES = ["smol-own", "smol-hermes", "smol-llama3", "smol-mistral", "smol-mistral-args", "smol-qwen3-coder",
            "smol-harmony"]
GREEDY = dict(temperature=0, seed=1)


@pytest.fixture(scope="module")
def servers(smollm2_path, tmp_path_factory):
    """One server per family, all loaded up front (a model switch would start an engine thread mid-test)."""
    paths = family_models(smollm2_path, tmp_path_factory.mktemp("families"))
    started = {name: start_server({name: path}) for name, path in paths.items()}
    yield started
    for s in started.values():
        s.stop()


class Clients:
    """`clients.chat(model=...)`: the openai client of that model's server."""

    def __init__(self, servers):
        self._clients = {name: openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0, timeout=300)
                         for name, s in servers.items()}

    def create(self, *, model: str, **kw):
        return self._clients[model].chat.completions.create(model=model, **kw)

    def stream(self, *, model: str, **kw):
        return self._clients[model].chat.completions.stream(model=model, **kw)


@pytest.fixture
def client(servers):
    return Clients(servers)


def call_of(message):
    assert message.tool_calls, message
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]


@pytest.mark.parametrize("model", FAMILIES)
def test_a_required_call_in_each_family_streamed_and_not(client, model):
    args = dict(model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
                max_tokens=120, **GREEDY)
    r = client.create(**args)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [(name, arguments)] = call_of(choice.message)
    assert name in ("get_weather", "get_time") and isinstance(arguments, dict)
    c = choice.message.tool_calls[0]
    assert c.type == "function" and len(c.id) == 9

    pieces = []
    with client.stream(**args) as stream:
        for event in stream:
            if event.type == "chunk" and event.chunk.choices and event.chunk.choices[0].delta.tool_calls:
                pieces.extend(event.chunk.choices[0].delta.tool_calls)
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert call_of(final.choices[0].message) == call_of(choice.message)
    assert pieces[0].id and pieces[0].function.name == name  # the name comes first...
    assert "".join(p.function.arguments or "" for p in pieces) == final.choices[0].message.tool_calls[0].function.arguments


def test_each_tool_choice(client):
    base = dict(model="smol-own", messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False, max_tokens=120,
                **GREEDY)
    none = client.create(tool_choice="none", **base).choices[0]
    assert none.message.tool_calls is None and none.message.content
    auto = client.create(tool_choice="auto", **base).choices[0]
    assert auto.message.tool_calls or auto.message.content  # the model's choice: either is well formed
    if auto.message.tool_calls:
        assert auto.finish_reason == "tool_calls" and call_of(auto.message)
    required = client.create(tool_choice="required", **base).choices[0]
    assert required.finish_reason == "tool_calls" and call_of(required.message)
    named = client.create(tool_choice={"type": "function", "function": {"name": "get_time"}},
                                           **base).choices[0]
    [(name, arguments)] = call_of(named.message)
    assert name == "get_time" and isinstance(arguments.get("zone"), str)


def test_parallel_calls_come_with_their_own_ids_and_indexes(client):
    strict = {"type": "function", "function": {**WEATHER["function"], "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
        "additionalProperties": False}}}
    ask = "Get the weather for Paris. Then get the weather for Rome."
    args = dict(model="smol-hermes", messages=[{"role": "user", "content": ask}], tools=[strict],
                tool_choice="required", max_tokens=200, **GREEDY)
    r = client.create(parallel_tool_calls=True, **args).choices[0]
    calls = r.message.tool_calls
    assert r.finish_reason == "tool_calls" and len(calls) >= 2
    assert len({c.id for c in calls}) == len(calls)
    indexes = []
    with client.stream(parallel_tool_calls=True, **args) as stream:
        for event in stream:
            if event.type == "chunk" and event.chunk.choices:
                indexes += [d.index for d in event.chunk.choices[0].delta.tool_calls or () if d.id]
    assert indexes == list(range(len(calls)))
    single = client.create(parallel_tool_calls=False, **args).choices[0]
    assert len(single.message.tool_calls) == 1


@pytest.mark.parametrize("model", ["smol-hermes", "smol-own"])
def test_a_three_round_agent_loop_reuses_the_whole_earlier_prompt(client, model):
    messages = [{"role": "system", "content": "You are a weather agent. " * 20}, *ASK]
    usage = []
    for round_ in range(3):
        r = client.create(model=model, messages=messages, tools=[WEATHER, TIME],
                                           tool_choice="required" if round_ < 2 else "none",
                                           parallel_tool_calls=False, max_tokens=80, **GREEDY)
        usage.append(r.usage)
        message = r.choices[0].message
        if round_ < 2:
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id,
                             "content": json.dumps({"temperature_c": 21 + round_, "sky": "clear"})})
        else:
            assert message.content and not message.tool_calls
    for before, after in zip(usage, usage[1:]):
        # the earlier prompt and the call the model wrote are all in the cache: only the tool result is new
        assert after.prompt_tokens_details.cached_tokens >= before.prompt_tokens + before.completion_tokens - 1, \
            (before, after)


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer",
     "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
     "minItems": 1, "maxItems": 3}}, "required": ["tags"], "additionalProperties": False},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"],
     "additionalProperties": False},
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False},
    {"type": "object", "properties": {"x": {"type": "number", "minimum": -1, "maximum": 1}}, "required": ["x"],
     "additionalProperties": False},
    {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["zip"],
     "additionalProperties": False},
    {"type": "object", "properties": {"point": {"type": "object", "properties": {"x": {"type": "integer",
     "minimum": -99, "maximum": 99}, "y": {"type": "integer", "minimum": -99, "maximum": 99}}, "required": ["x", "y"], "additionalProperties": False}}, "required": ["point"],
     "additionalProperties": False},
    {"type": "object", "properties": {"value": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 8}]}},
     "required": ["value"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"title": {"type": "string", "minLength": 3, "maxLength": 30},
     "year": {"type": "integer", "minimum": 1900, "maximum": 2030}}, "required": ["title", "year"],
     "additionalProperties": False},
    {"type": "object", "properties": {"mood": {"const": "happy"}}, "required": ["mood"], "additionalProperties": False},
    {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"],
     "additionalProperties": False},
    {"type": "object", "properties": {"people": {"type": "array", "maxItems": 2, "items": {"type": "object",
     "properties": {"name": {"type": "string", "maxLength": 12}}, "required": ["name"], "additionalProperties": False}}},
     "required": ["people"], "additionalProperties": False},
    {"type": "object", "properties": {"answer": {"type": ["string", "null"], "maxLength": 15}}, "required": ["answer"],
     "additionalProperties": False},
    {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}},
     "required": ["n"], "additionalProperties": False},
    {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}, "required": ["date"],
     "additionalProperties": False},
    {"$defs": {"item": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
     "additionalProperties": False}}, "type": "object", "properties": {"first": {"$ref": "#/$defs/item"}},
     "required": ["first"], "additionalProperties": False},
    {"type": "object", "properties": {"grid": {"type": "array", "maxItems": 2, "items": {"type": "array",
     "maxItems": 2, "items": {"type": "integer", "minimum": 0, "maximum": 1}}}}, "required": ["grid"],
     "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}, "b": {"type": "string",
     "maxLength": 5}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"status": {"oneOf": [{"const": "open"}, {"const": "closed"}]},
     "count": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100}}, "required": ["status", "count"],
     "additionalProperties": False},
]


def test_twenty_schemas_give_replies_that_validate(client):
    for i, schema in enumerate(SCHEMAS):
        r = client.create(
            model="smol-own", messages=[{"role": "user", "content": "Fill in an example, as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema, "strict": True}},
            max_tokens=200, **GREEDY)
        choice = r.choices[0]
        assert choice.finish_reason == "stop", (i, choice.message.content)
        jsonschema.validate(json.loads(choice.message.content), schema, format_checker=jsonschema.FormatChecker())
    obj = client.create(model="smol-hermes", messages=[{"role": "user", "content": "A JSON object."}],
                                         response_format={"type": "json_object"}, max_tokens=300, **GREEDY)
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


def test_a_streamed_structured_reply_is_the_same_json(client):
    schema = SCHEMAS[0]
    args = dict(model="smol-own", messages=[{"role": "user", "content": "A person, as JSON."}], max_tokens=100,
                response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}, **GREEDY)
    whole = client.create(**args).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.create(stream=True, **args)
                       if c.choices)
    assert json.loads(streamed) == json.loads(whole)
    jsonschema.validate(json.loads(whole), schema)


def test_reasoning_is_split_from_the_answer_streamed_and_not(client):
    # DeepSeek-R1's template opens <think> in the prompt: what the model writes is its reasoning until </think>
    args = dict(model="smol-r1", messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=24, **GREEDY)
    r = client.create(**args).choices[0].message
    thought = r.model_extra["reasoning_content"]
    assert thought and r.content == ""
    streamed = ["", ""]
    for chunk in client.create(stream=True, **args):
        if chunk.choices:
            streamed[0] += (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
            streamed[1] += chunk.choices[0].delta.content or ""
    assert streamed == [thought, ""]
    # Qwen3 with thinking switched off: the template closes the block itself, the reply is the answer
    off = client.create(model="smol-qwen3", messages=[{"role": "user", "content": "Hi!"}],
                                         extra_body={"chat_template_kwargs": {"enable_thinking": False}},
                                         max_tokens=16, **GREEDY).choices[0].message
    assert off.content and not (off.model_extra or {}).get("reasoning_content")


def test_past_reasoning_is_not_sent_back_as_answer_text_and_the_cache_survives_it(client):
    ask = [{"role": "user", "content": "What is 2+2?"}]
    first = client.create(model="smol-r1", messages=ask, max_tokens=24, **GREEDY)
    thought = first.choices[0].message.model_extra["reasoning_content"]
    follow = [*ask, {"role": "assistant", "content": "4", "reasoning_content": thought},
              {"role": "user", "content": "And 3+3?"}]
    second = client.create(model="smol-r1", messages=follow, max_tokens=4, **GREEDY)
    # the template drops past reasoning; everything before the assistant turn is still reused
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 4


def test_predicted_outputs_draft_from_the_prediction_and_report_it(client, smollm2_path):
    from conftest import load

    code = "\n".join(f"def f{i}(x):\n    return x * {i} + {i * i}\n" for i in range(12))
    messages = [{"role": "user", "content": f"Repeat this code exactly:\n\n{code}"}]
    args = dict(model="smol-own", messages=messages, max_tokens=160, **GREEDY)
    r = client.create(prediction={"type": "content", "content": code}, **args)
    details = r.usage.completion_tokens_details
    rt = load(smollm2_path)
    predicted = len(rt.tokenize(code, add_bos=False, parse_special=False))
    rt.close()
    assert details.accepted_prediction_tokens > 20
    assert details.accepted_prediction_tokens + details.rejected_prediction_tokens == predicted
    plain = client.create(**args)
    # no prediction, no prediction figures; Lantern's own drafts come by source in an extra field
    plain_details = plain.usage.completion_tokens_details
    assert plain_details.accepted_prediction_tokens is None
    lookup = plain_details.model_extra["drafts"]["lookup"]
    assert 0 < lookup["accepted"] <= lookup["drafted"] == lookup["accepted"] + lookup["rejected"]
    by_source = details.model_extra["drafts"]
    assert by_source["prediction"]["accepted"] == details.accepted_prediction_tokens
    assert r.choices[0].message.content[:40] == plain.choices[0].message.content[:40]
