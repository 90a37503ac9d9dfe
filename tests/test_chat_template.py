from pathlib import Path

import pytest

from basics.errors import InvalidRequestError
from chat_format.chat_template import ChatTemplate, ChatTemplateError, Message, parse_messages

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__['os'].system('touch /tmp/lantern-pwned') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% set x = messages.append({'role': 'user', 'content': 'injected'}) %}{{ messages }}",
    "{{ raise_exception.__globals__ }}",
]


def test_renders_chatml():
    t = ChatTemplate(CHATML)
    out = t.render([Message("system", "Be brief."), Message("user", "Hi")])
    assert out == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("source", ESCAPES)
def test_template_cannot_reach_python_internals(source):
    marker = Path("/tmp/lantern-pwned")
    marker.unlink(missing_ok=True)
    messages = [Message("user", "hi")]
    try:
        out = ChatTemplate(source).render(messages)
    except ChatTemplateError as e:
        assert "unsafe" in str(e) or "failed" in str(e)
    else:  # rendering to nothing is safe too, as long as nothing leaked
        assert not any(word in out for word in ("class", "function", "module", "uid=", "injected"))
    assert not marker.exists()
    assert messages == [Message("user", "hi")]


def test_template_raise_exception_becomes_a_request_error():
    t = ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}")
    with pytest.raises(InvalidRequestError, match="must start with user"):
        t.render([Message("assistant", "x")])


def test_broken_template_is_a_clear_error():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")


def test_fallback_for_models_without_a_template():
    t = ChatTemplate(None)
    assert t.is_fallback
    assert t.render([Message("system", "S"), Message("user", "Q")]) == "S\n\nUser: Q\nAssistant:"


@pytest.mark.parametrize("messages,match", [
    ([], "empty"),
    ([{"role": "wizard", "content": "x"}], "role"),
    ([{"role": "user", "content": 3}], "content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}], "does not fetch images from URLs"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "only text and image_url parts"),
    (["hello"], "object"),
])
def test_bad_messages(messages, match):
    with pytest.raises(InvalidRequestError, match=match):
        parse_messages(messages)


def test_text_parts_are_joined():
    [m] = parse_messages([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    assert m == Message("user", "ab")


def test_message_content_is_kept_apart_from_template_text():
    t = ChatTemplate(CHATML)
    parts = t.render_parts([Message("user", "Hi <|im_end|> there")])
    assert parts == [("<|im_start|>user\n", False), ("Hi <|im_end|> there", True),
                     ("<|im_end|>\n<|im_start|>assistant\n", False)]


def test_a_template_that_changes_content_is_not_split():
    t = ChatTemplate("{% for m in messages %}[{{ m.content | trim | upper }}]{% endfor %}")
    assert t.render_parts([Message("user", " hi ")]) == [("[HI]", False)]


def test_template_features_transformers_offers():
    """Loop controls, the {% generation %} tag and tojson's options, as real templates use them."""
    from chat_format.chat_template import ChatTemplate, Message

    source = ("{% for m in messages %}{% if m.content == 'skip' %}{% continue %}{% endif %}"
              "{% if loop.index > 3 %}{% break %}{% endif %}"
              "{% if m.role == 'assistant' %}{% generation %}<{{ m.content }}>{% endgeneration %}"
              "{% else %}{{ m.content }}{% endif %}{% endfor %}"
              "{{ {'b': 1, 'a': ['é']}|tojson(separators=(',', ':'), sort_keys=True, ensure_ascii=True) }}"
              "{{ {'k': 'v'}|tojson(indent=2) }}")
    messages = [Message("user", "skip"), Message("user", "u1"), Message("assistant", "a1"), Message("user", "u2"),
                Message("assistant", "late")]
    assert ChatTemplate(source).render(messages) == 'u1<a1>{"a":["\\u00e9"],"b":1}{\n  "k": "v"\n}'


def test_a_template_that_prints_the_time_renders_one_time_per_request():
    """Two renders of one request (the prompt, and the one that finds the message texts) print the same time, so
    the texts are found; issue 32 saw them a second apart, and the parts then fell back to one unsplit text."""
    from chat_format.chat_template import ChatTemplate, Message

    template = ChatTemplate("Now: {{ strftime_now('%H:%M:%S.%f') }}\n{% for m in messages %}{{ m.content }}\n"
                            "{% endfor %}")
    parts = template.render_parts([Message("user", "<|im_end|> hello")])
    assert ("<|im_end|> hello", True) in parts
    assert template.render([Message("user", "x")]).startswith("Now: ")
