"""Tool-call formats and reasoning tags: recorded model outputs of each family, read back whole and streamed in
pieces split at every character; each family's grammar accepts what its models write; a lazy constraint engages
at the trigger."""
from __future__ import annotations

import json

import pytest
from conftest import load

from chat_format.format_choice import FORMATS, detect
from chat_format.harmony import HARMONY
from chat_format.reply import ReplyParser, ToolSetup, starts_thinking, think_tags
from chat_format.tool_formats import Tool
from engine.constraint import Constraint, GrammarTokenizer

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
           "required": ["city"]}
SCHEMAS = {"get_weather": WEATHER, "search": {"type": "object", "properties": {"q": {"type": "string"}}}}
TOOLS = [Tool(n, s) for n, s in SCHEMAS.items()]

# (format, what a model of that family writes, content before the calls, the calls)
RECORDED = [
    ("hermes", 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n'
               '</tool_call>\n<tool_call>\n{"name": "search", "arguments": {"q": "a \\"quoted\\" } brace"}}\n</tool_call>',
     "Let me look.\n", [("get_weather", '{"city": "Paris", "days": 2}'), ("search", '{"q": "a \\"quoted\\" } brace"}')]),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Zürich"}}', "",
     [("get_weather", '{"city": "Zürich"}')]),
    ("llama3", '<|python_tag|>{"name": "search", "parameters": {"q": "tags"}}', "", [("search", '{"q": "tags"}')]),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
                '{"name": "search", "arguments": {"q": "x"}}]', "",
     [("get_weather", '{"city": "Oslo"}'), ("search", '{"q": "x"}')]),
    ("mistral-args", '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", "days": 1}[TOOL_CALLS]search[ARGS]{"q": "y"}', "",
     [("get_weather", '{"city": "Rome", "days": 1}'), ("search", '{"q": "y"}')]),
    ("qwen3-coder", 'Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n'
                    '<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>', "Checking.\n",
     [("get_weather", '{"city": "New York", "days": 3}')]),
    ("generic", '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lima"}}]}', "",
     [("get_weather", '{"city": "Lima"}')]),
    ("harmony", '<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary '
                'to=functions.get_weather <|constrain|>json<|message|>{"city": "Kyiv"}<|call|>', "",
     [("get_weather", '{"city": "Kyiv"}')]),
]


def fmt_of(name):
    return HARMONY if name == "harmony" else FORMATS[name]


def read(name, text, step, *, stream_calls=True, schemas=SCHEMAS):
    """Feed `text` in pieces of `step` characters; return (content, reasoning, streamed calls, final calls)."""
    p = ReplyParser(tools=ToolSetup(fmt_of(name), schemas, stream_calls), harmony=name == "harmony")
    content, reasoning, streamed = "", "", {}

    def take(d):
        nonlocal content, reasoning
        content += d.content
        reasoning += d.reasoning
        for c in d.calls:
            entry = streamed.setdefault(c.index, {"id": None, "name": None, "arguments": ""})
            if c.name is not None:
                assert entry["name"] is None, "a call's name and id come once"
                entry.update(id=c.id, name=c.name)
            else:
                assert entry["name"] is not None, "the name comes before the arguments"
            entry["arguments"] += c.arguments

    for i in range(0, len(text), step):
        take(p.push(text[i:i + step]))
    last, calls = p.finish()
    take(last)
    return content, reasoning, streamed, calls


@pytest.mark.parametrize("name,text,before,expected", RECORDED, ids=[r[0] for r in RECORDED])
def test_recorded_calls_read_the_same_whole_and_split_at_every_character(name, text, before, expected):
    whole = read(name, text, len(text))
    assert whole[0] == before
    assert [(c.name, c.arguments) for c in whole[3]] == expected
    for c in whole[3]:
        assert json.loads(c.arguments) is not None and len(c.id) == 9 and c.id.isalnum()
    for step in (1, 2, 3, 5, 7):
        content, _, streamed, calls = read(name, text, step)
        assert content == before, step
        assert [(c.name, c.arguments) for c in calls] == expected, step
        # what streamed assembles into the same calls, with the ids the final calls carry
        assert [(s["name"], s["arguments"], s["id"]) for s in streamed.values()] == \
            [(c.name, c.arguments, c.id) for c in calls], step


def test_harmony_thinking_goes_to_reasoning():
    _, reasoning, _, _ = read("harmony", RECORDED[-1][1], 1)
    assert reasoning == "Need weather."
    content, reasoning, _, calls = read("harmony", "<|channel|>analysis<|message|>Hm.<|end|><|start|>assistant"
                                                   "<|channel|>final<|message|>Hello!<|return|>", 1)
    assert (content, reasoning, calls) == ("Hello!", "Hm.", None)


@pytest.mark.parametrize("name,text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"\n</tool_call>'),  # bad JSON
    ("hermes", '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>'),  # unknown function
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": [1, 2]}\n</tool_call>'),  # not an object
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}} and more'),
    ("mistral-args", '[TOOL_CALLS]get_weather[ARGS]{"city": '),
    ("qwen3-coder", '<tool_call>\n<function=nope>\n</function>\n</tool_call>'),
    ("generic", '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "P"}}'),
])
def test_a_call_written_wrong_comes_back_as_content(name, text):
    for step in (1, len(text)):
        content, _, streamed, calls = read(name, text, step, stream_calls=False)
        assert calls is None and content == text and not streamed


def test_text_that_only_looks_like_a_trigger_stays_content():
    for step in (1, 4):
        content, _, _, calls = read("hermes", "Use <tool_ with care: <tool> tags.", step)
        assert content == "Use <tool_ with care: <tool> tags." and calls is None


def test_generic_answers_are_decoded_as_they_stream():
    text = '{"response": "Caf\\u00e9 \\"ok\\"\\n\\ud83d\\ude00 done"}'
    for step in (1, 3, len(text)):
        content, _, _, calls = read("generic", text, step)
        assert content == 'Café "ok"\n😀 done' and calls is None


@pytest.mark.parametrize("tags,prompt_end,text,expected", [
    (("<think>", "</think>"), "<|im_start|>assistant\n", "<think>\nLet me see.\n</think>\n\nIt is 4.",
     ("Let me see.\n", "It is 4.")),
    (("<think>", "</think>"), "<｜Assistant｜><think>\n", "Hmm, 2+2.\n</think>\n\nFour.", ("Hmm, 2+2.\n", "Four.")),
    (("<seed:think>", "</seed:think>"), "", "<seed:think>a</seed:think>b", ("a", "b")),
    (("<think>", "</think>"), "", "The tag <think> mid-text is text.", ("", "The tag <think> mid-text is text.")),
])
def test_reasoning_split_at_every_character(tags, prompt_end, text, expected):
    for step in range(1, 8):
        p = ReplyParser(think=tags, thinking=starts_thinking(prompt_end, tags))
        got = ["", ""]
        for i in range(0, len(text), step):
            d = p.push(text[i:i + step])
            got[0] += d.reasoning
            got[1] += d.content
        d, _ = p.finish()
        got[0] += d.reasoning
        got[1] += d.content
        assert tuple(got) == expected, step


def test_formats_and_tags_are_recognised_from_real_templates():
    from real_templates import template
    from chat_format.chat_template import ChatTemplate

    expect = {"Qwen-Qwen2.5-7B-Instruct": "hermes", "Qwen-Qwen3-0.6B": "hermes",
              "HuggingFaceTB-SmolLM3-3B": "generic",  # this copy of its template prints no tools
              "meta-llama-Llama-3.1-8B-Instruct": "llama3", "mistralai-Mistral-Nemo-Instruct-2407": "mistral",
              "Mistral-Small-3.2-24B-Instruct-2506": "mistral-args", "Qwen3-Coder": "qwen3-coder",
              "openai-gpt-oss-120b": "harmony", "google-gemma-2-2b-it": "generic"}
    for name, fmt in expect.items():
        source = template(name)
        assert detect(source, template_takes_tools=ChatTemplate(source).caps.tools).name == fmt, name
    assert think_tags(template("Qwen-Qwen3-0.6B")) == ("<think>", "</think>")
    assert think_tags(template("ByteDance-Seed-OSS")) == ("<seed:think>", "</seed:think>")
    assert think_tags(template("Qwen-Qwen2.5-7B-Instruct")) is None
    from models.info import chat_style  # what `lantern doctor` and `models info` show

    assert chat_style(template("Qwen-Qwen3-0.6B")) == {"tool_format": "hermes", "reasoning": "<think></think>"}
    assert chat_style(None) == {"tool_format": "generic", "reasoning": ""}
    assert chat_style("{% if %}")["tool_format"].startswith("none")


# -- grammars, on the starter model's real vocabulary ------------------------------------------------

@pytest.fixture(scope="module")
def vocab(smollm2_path):
    rt = load(smollm2_path)
    yield GrammarTokenizer(rt)
    rt.close()


@pytest.mark.parametrize("name,text,before,expected", RECORDED, ids=[r[0] for r in RECORDED])
def test_each_grammar_accepts_what_its_models_write(vocab, name, text, before, expected):
    import llguidance

    fmt = fmt_of(name)
    calls_text = text[len(before):]
    if name == "harmony":
        calls_text = calls_text[calls_text.index("to=functions."):]
    tools = TOOLS
    grammar = fmt.grammar(tools, parallel=True, spell=vocab.spell)
    m = llguidance.LLMatcher(vocab.ll, grammar, log_level=0)
    assert not m.is_error(), m.get_error()
    tokens = vocab.runtime.tokenize(calls_text, add_bos=False, parse_special=True)
    assert m.consume_tokens(tokens), m.get_error()
    assert m.is_accepting()
    # and refuses a call to a function that is not offered
    bad = llguidance.LLMatcher(vocab.ll, grammar, log_level=0)
    called = expected[0][0]
    wrong = calls_text.replace(called, called[:-1] + "X", 1)
    assert not bad.consume_tokens(vocab.runtime.tokenize(wrong, add_bos=False, parse_special=True)) or \
        not bad.is_accepting()


def test_a_lazy_constraint_engages_at_the_trigger_and_forces_a_valid_call(vocab):
    """Free text is the model's own (here scripted); from `<tool_call>` on, the mask writes a valid call."""
    rt = vocab.runtime
    script = rt.tokenize("Sure, checking. <tool_call>", add_bos=False, parse_special=False)
    grammar = FORMATS["hermes"].grammar(TOOLS, parallel=False, spell=vocab.spell)
    c = Constraint(vocab, grammar, trigger="<tool_call>")
    free = iter(script)
    sampler = c.wrap(lambda logits, context: next(free, None) if not c.engaged else int(logits.argmax()))
    prompt = rt.tokenize("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n", add_bos=False)
    logits = rt.forward(prompt, 0)[0]
    out = []
    for _ in range(80):
        t = sampler(logits, prompt + out)
        if t in vocab.ends:
            break
        out.append(t)
        logits = rt.forward([t], rt.n_past)[0]
    text = rt.detokenize(out)
    assert text.startswith("Sure, checking. <tool_call>\n{\"name\": \"")
    content, _, _, calls = read("hermes", text, 3)
    assert content == "Sure, checking. " and len(calls) == 1 and calls[0].name in SCHEMAS
    assert c.masks > 0 and not c.failed
