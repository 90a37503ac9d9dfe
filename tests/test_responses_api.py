"""OpenAI's Responses API on the real endpoint and the real starter model, with the official openai client:
`responses.create` and `responses.stream`, a function-calling loop, previous_response_id on the stored
conversation, structured output, reasoning items, and clear 400s."""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from agent_models import family_models, start_server

WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
GREEDY = dict(temperature=0)


@pytest.fixture(scope="module")
def servers(smollm2_path, tmp_path_factory):
    paths = family_models(smollm2_path, tmp_path_factory.mktemp("families"), names=["smol-own", "smol-hermes",
                                                                                    "smol-r1"])
    started = {name: start_server({name: path}) for name, path in paths.items()}
    yield started
    for s in started.values():
        s.stop()


def client(servers, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers[name].base_url, api_key="x", max_retries=0, timeout=300)


def test_a_response_is_the_chat_completion_reply_streamed_and_not(servers):
    c = client(servers, "smol-own")
    args = dict(model="smol-own", instructions="You are terse.", input="Name three colours.",
                max_output_tokens=24, **GREEDY)
    r = c.responses.create(**args)
    assert r.object == "response" and r.id.startswith("resp_") and r.status in ("completed", "incomplete")
    same = c.chat.completions.create(model="smol-own", max_tokens=24, **GREEDY, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours."}])
    assert r.output_text == same.choices[0].message.content  # one engine under both APIs
    assert r.usage.input_tokens == same.usage.prompt_tokens and r.usage.output_tokens >= 1
    assert (r.status == "incomplete") == (same.choices[0].finish_reason == "length")
    with c.responses.stream(**args) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == r.output_text == final.output_text
    assert final.usage.input_tokens_details.cached_tokens >= r.usage.input_tokens - 2  # the prompt again: reused


def test_a_function_calling_loop_and_previous_response_id(servers):
    c = client(servers, "smol-hermes")
    first = c.responses.create(model="smol-hermes", input="What is the weather in Paris?", tools=[WEATHER],
                               tool_choice="required", parallel_tool_calls=False, max_output_tokens=60, **GREEDY)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"]
    # round 2, stateless: the whole input again, with the call and its output
    items = [{"role": "user", "content": "What is the weather in Paris?"},
             *[o.model_dump(exclude_none=True) for o in first.output],
             {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temperature_c": 21}'}]
    with c.responses.stream(model="smol-hermes", input=items, tools=[WEATHER], tool_choice="required", store=True,
                            parallel_tool_calls=False, max_output_tokens=60, **GREEDY) as stream:
        kinds = {e.type for e in stream}
        second = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    again = [o for o in second.output if o.type == "function_call"]
    assert again and second.usage.input_tokens_details.cached_tokens >= \
        first.usage.input_tokens + first.usage.output_tokens - 1  # the earlier prompt and call, reused
    # round 3 from the stored response: only the new output is sent
    third = c.responses.create(model="smol-hermes", previous_response_id=second.id, tools=[WEATHER], store=True,
                               tool_choice="none", max_output_tokens=30, **GREEDY,
                               input=[{"type": "function_call_output", "call_id": again[0].call_id,
                                       "output": '{"temperature_c": 22}'}])
    assert third.output_text and not [o for o in third.output if o.type == "function_call"]
    assert third.usage.input_tokens_details.cached_tokens >= \
        second.usage.input_tokens + second.usage.output_tokens - 1
    assert third.previous_response_id == second.id
    assert c.responses.retrieve(third.id).output_text == third.output_text
    c.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(third.id)


def test_an_unknown_previous_response_id_is_a_400_naming_it(servers):
    c = client(servers, "smol-own")
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="smol-own", input="Hi", previous_response_id="resp_nope")
    assert e.value.body["param"] == "previous_response_id" and "resp_nope" in e.value.body["message"]
    unstored = c.responses.create(model="smol-own", input="Hi", max_output_tokens=4)  # stateless by default
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="smol-own", input="Hi", previous_response_id=unstored.id)


def test_structured_output_and_reasoning_items(servers):
    c = client(servers, "smol-own")
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    r = c.responses.create(model="smol-own", input="Pick a colour.", max_output_tokens=40, **GREEDY,
                           text={"format": {"type": "json_schema", "name": "pick", "schema": schema}})
    jsonschema.validate(json.loads(r.output_text), schema)
    t = client(servers, "smol-r1").responses.create(model="smol-r1", input="What is 2+2?", max_output_tokens=24,
                                                    reasoning={"effort": "low"}, store=True, **GREEDY)
    reasoning = [o for o in t.output if o.type == "reasoning"]
    assert reasoning and reasoning[0].content[0].text and t.usage.output_tokens_details.reasoning_tokens > 0
    follow = client(servers, "smol-r1").responses.create(model="smol-r1", previous_response_id=t.id,
                                                         input="And 3+3?", max_output_tokens=4, **GREEDY)
    assert follow.usage.input_tokens_details.cached_tokens >= t.usage.input_tokens - 4


@pytest.mark.parametrize("body, param", [
    ({"input": "Hi", "frobnicate": 1}, "frobnicate"),
    ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "x"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input[0].call_id"),
    ({"input": "Hi", "background": True}, "background"),
    ({"input": "Hi", "include": ["reasoning.encrypted_content"]}, "include[0]"),
    ({"input": "Hi", "text": {"verbosity": "low"}}, "text.verbosity"),
])
def test_bad_requests_are_400s_naming_the_field(servers, body, param):
    root = servers["smol-own"].base_url
    r = httpx.post(root + "/responses", json={"model": "smol-own", **body}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_input_items_become_one_assistant_turn_with_its_text_and_calls():
    from app.server.responses_request import input_messages

    items = [{"role": "user", "content": "Weather in Paris and Rome?"},
             {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "Two cities."}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
             {"type": "function_call", "call_id": "a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
             {"type": "function_call", "call_id": "b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
             {"type": "function_call_output", "call_id": "a", "output": "sunny"},
             {"type": "function_call_output", "call_id": "b", "output": "rain"}]
    messages = input_messages(items, {})
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    turn = messages[1]
    assert turn["content"] == "Checking." and turn["reasoning_content"] == "Two cities."
    assert [c["id"] for c in turn["tool_calls"]] == ["a", "b"] and messages[3]["name"] == "get_weather"
