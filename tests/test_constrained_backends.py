"""Constrained decoding is one code path for every backend: the masks come from the runtime's own token bytes."""
from __future__ import annotations

import json

import jsonschema
from conftest import run

from chat_format.tool_formats import Tool
from engine.engine import Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


def test_json_replies_and_tool_calls_on_each_backend(any_runtime):
    engine = Engine(any_runtime)
    greedy = SamplingParams(temperature=0, seed=1)
    text, _, final = run(engine, GenerationRequest(messages=[{"role": "user", "content": "A person as JSON."}],
                                                   json_schema=PERSON, sampling=greedy, max_tokens=60))
    assert final.reason == "stop" and final.stats.mask_ms > 0
    jsonschema.validate(json.loads(text), PERSON)
    tools = [Tool("get_weather", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                                  "required": ["city"], "additionalProperties": False})]
    _, _, final = run(engine, GenerationRequest(messages=[{"role": "user", "content": "Weather in Paris?"}],
                                                tools=tools, tool_choice="required", parallel_tool_calls=False,
                                                sampling=greedy, max_tokens=60))
    assert final.reason == "tool_calls" and [c.name for c in final.tool_calls] == ["get_weather"]
    assert isinstance(json.loads(final.tool_calls[0].arguments)["city"], str)
