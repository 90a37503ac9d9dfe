"""The chat templates of about 70 real models (llama.cpp's test data, fetched from llama-cpp-python's sdist):
each compiles in the sandbox and renders a plain chat, a tool conversation and a reasoning turn, taking the
messages as transformers passes them, or fails with a message naming what it lacks."""
from __future__ import annotations

import pytest
from real_templates import all_templates, template

from basics.errors import LanternError
from chat_format.chat_template import ChatTemplate, Message, ToolCall
from chat_format.format_choice import detect

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
                   "required": ["city"]}}}]
CALL = ToolCall("abc123XYZ", "get_weather", '{"city": "Paris"}')
PLAIN = [Message("system", "You are brief."), Message("user", "Hi there"), Message("assistant", "Hello!"),
         Message("user", "How are you?")]
TOOL_TALK = [Message("system", "You are brief."), Message("user", "Weather in Paris?"),
             Message("assistant", None, (CALL,)),
             Message("tool", "SUNNY 21C", tool_call_id="abc123XYZ", name="get_weather"),
             Message("assistant", "It is sunny."), Message("user", "And tomorrow?")]
THINKING = [Message("user", "What is 2+2?"), Message("assistant", "4.", reasoning="Two and two make four."),
            Message("user", "And 3+3?")]

NAMES = [p.stem for p in all_templates()]


def test_the_templates_are_there():
    assert len(NAMES) >= 65, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_real_template_renders_chats_tools_and_reasoning(name):
    t = ChatTemplate(template(name), bos_token="<s>", eos_token="</s>")
    plain = t.render(PLAIN)
    assert "How are you?" in plain and "Hi there" in plain
    assert "You are brief." in plain  # a template without a system role gets it in the first user turn
    talk = t.render(TOOL_TALK, tools=TOOLS)
    for needle in ("Weather in Paris?", "SUNNY 21C", "It is sunny.", "And tomorrow?", "get_weather"):
        assert needle in talk, needle
    if t.caps.tool_calls:
        assert "Paris" in talk  # the call's arguments, printed by the template itself
    thinking = t.render(THINKING, options={"enable_thinking": True})
    assert "And 3+3?" in thinking
    if t.caps.reasoning:
        last = t.render(THINKING[:2], add_generation_prompt=False)
        assert "Two and two make four." in last  # templates that keep reasoning get it back
    # and the message text is still found for tokenizing as plain text
    parts = t.render_parts(TOOL_TALK, tools=TOOLS)
    assert "".join(p for p, _ in parts) == talk
    fmt = detect(t.source, template_takes_tools=t.caps.tools)
    assert fmt.name in {"hermes", "llama3", "mistral", "mistral-args", "qwen3-coder", "harmony", "generic"}


def test_arguments_reach_templates_as_a_mapping_and_print_as_their_json():
    source = ("{% for m in messages %}{% for c in m.tool_calls or [] %}"
              "[{% for k, v in c.function.arguments.items() %}{{ k }}={{ v }}{% endfor %}]"
              "({{ c.function.arguments }})<{{ c.function.arguments | tojson }}>{{ c.function.name }}"
              "{% endfor %}{% endfor %}")
    t = ChatTemplate(source)
    out = t.render([Message("user", "q"), Message("assistant", None, (ToolCall("i", "f", '{"a": 1,"b":"x"}'),))])
    assert out == '[a=1b=x]({"a": 1,"b":"x"})<{"a": 1, "b": "x"}>f'


def test_content_parts_go_to_templates_that_iterate_them():
    source = ("{% for m in messages %}{% for p in m.content %}{% if p.type == 'text' %}{{ p.text }}{% endif %}"
              "{% endfor %};{% endfor %}")
    t = ChatTemplate(source)
    assert t.caps.typed_content
    assert t.render([Message("user", "hello"), Message("assistant", "world")]) == "hello;world;"
    assert not ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}").caps.typed_content


def test_templates_that_take_no_tools_get_them_as_text():
    t = ChatTemplate(template("google-gemma-2-2b-it"))
    assert not t.caps.tools and not t.caps.system_role
    talk = t.render(TOOL_TALK, tools=TOOLS)
    assert '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}' in talk
    assert '<tool_response name="get_weather" id="abc123XYZ">\nSUNNY 21C\n</tool_response>' in talk


def test_a_missing_feature_is_named():
    with pytest.raises(LanternError, match="does not compile.*frobnicate"):
        ChatTemplate("{{ messages[0].content | frobnicate }}")
    t = ChatTemplate("{{ messages[0].content }}{{ render_image(messages[0]) }}")
    with pytest.raises(LanternError, match="'render_image' is undefined"):
        t.render([Message("user", "hi")])


def test_thinking_switches_reach_templates():
    t = ChatTemplate(template("Qwen-Qwen3-0.6B"))
    off = t.render([Message("user", "hi")], options={"enable_thinking": False})
    on = t.render([Message("user", "hi")], options={"enable_thinking": True})
    assert off.endswith("<think>\n\n</think>\n\n") and not on.endswith("</think>\n\n")
    gpt = ChatTemplate(template("openai-gpt-oss-120b"))
    assert "Reasoning: high" in gpt.render([Message("user", "hi")], options={"reasoning_effort": "high"})


def test_the_catalogs_families_are_read_from_their_real_templates():
    """What `lantern models catalog refresh` will find in each family's template: the catalog says the same."""
    from models.catalog import load_catalog
    from models.info import chat_style

    files = {"qwen3.5": "Qwen3.5-4B", "gemma-4": "google-gemma-4-31B-it", "gpt-oss": "openai-gpt-oss-120b",
             "ministral-3": "mistralai-Ministral-3-14B-Reasoning-2512", "glm": "GLM-4.7-Flash",
             "nemotron": "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "lfm2.5": "LFM2.5-Instruct",
             "granite-4.0": "ibm-granite-granite-4.0", "devstral": "unsloth-mistral-Devstral-Small-2507"}
    entries = {e.family: e for e in load_catalog() if e.kind == "chat" and e.format == "gguf"}
    for family, name in files.items():
        style = chat_style(template(name))
        assert entries[family].tools == style["tool_format"], family
    assert chat_style(template("google-gemma-4-31B-it"))["reasoning"] == "<|channel>thought<channel|>"
