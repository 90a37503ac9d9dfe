"""Chat templates written to run for minutes, fill the memory or recurse forever: each is stopped within its
budget with a ChatTemplateError naming the limit, memory stays bounded, and the engine goes on serving."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chat_format.chat_template import ChatTemplate, ChatTemplateError, Message
from chat_format.template_budget import TemplateLimits

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = {
    "nested ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(10**7) }}",
    "string times a billion": "{{ 'a'*10**9 }}",
    "list times a billion": "{{ [1]*10**9 }}",
    "recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "loop that calls nothing": "{% set x = [0]*90000 %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}",
    "center a billion": "{{ 'x'|center(10**9) }}",
    "ljust a billion": "{{ 'x'.ljust(10**9) }}",
    "huge power": "{{ 7**(10**9) }}",
    "replace everywhere": "{{ ('a'*1000000)|replace('', 'bbbbbbbb') }}",
    "format width": "{{ '%999999999d'|format(1) }}",
    "output flood": "{% for i in range(100000) %}{{ 'x'*1000 }}{% endfor %}",
    "doubling in a namespace": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                                "{% endfor %}{{ ns.s }}"),
    "self-including loop of joins": "{{ (range(100000)|list)|join('x'*100) }}",
}
MESSAGES = [Message("user", "hi")]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_is_stopped_within_its_budget(name):
    limits = TemplateLimits()
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError, match="budget|does not compile|failed") as e:
        ChatTemplate(HOSTILE[name], limits=limits).render(MESSAGES)
    elapsed = time.monotonic() - t0
    assert "budget" in str(e.value), str(e.value)
    # Not a speed assertion: the watchdog interrupts at the limit, so even a busy machine ends far before this.
    assert elapsed < limits.seconds + 30


def test_memory_stays_bounded_across_every_hostile_template():
    """In a child process, so its peak memory is its own: every template rendered, peak growth reported."""
    code = (
        "import json, resource, sys\n"
        "from chat_format.chat_template import ChatTemplate, Message, ChatTemplateError\n"
        "templates = json.loads(sys.stdin.read())\n"
        "ChatTemplate('{{ messages[0].content }}').render([Message('user', 'warm up')])\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for name, src in templates.items():\n"
        "    try:\n"
        "        ChatTemplate(src).render([Message('user', 'hi')])\n"
        "        print(name, 'RENDERED')\n"
        "    except ChatTemplateError:\n"
        "        pass\n"
        "print('peak growth KiB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(HOSTILE), capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RENDERED" not in out.stdout
    growth_kib = int(out.stdout.strip().splitlines()[-1].split()[-1])
    assert growth_kib < 300 * 1024, f"peak memory grew by {growth_kib / 1024:.0f} MiB"


def test_real_templates_render_normally_under_the_budget():
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    many = [Message("user" if i % 2 == 0 else "assistant", f"message {i} " * 50) for i in range(200)]
    text = ChatTemplate(chatml).render(many)
    assert text.count("<|im_start|>") == 201
    again = ChatTemplate(chatml).render(many)  # a fresh budget for each render
    assert again == text
    macro = "{% macro say(m) %}[{{ m.role }}] {{ m.content }}{% endmacro %}{% for m in messages %}{{ say(m) }}{% endfor %}"
    assert ChatTemplate(macro).render(MESSAGES) == "[user] hi"


def test_the_engine_comes_back_from_a_hostile_template_and_keeps_working(smollm2_path, tmp_path):
    from test_untrusted_gguf import write_gguf_with_template

    from engine.engine import Engine
    from engine.events import GenerationRequest
    from engine.sampling import SamplingParams
    from conftest import load

    path = write_gguf_with_template(smollm2_path, tmp_path / "slow.gguf", HOSTILE["loop that calls nothing"])
    engine = Engine(load(path))
    try:
        with pytest.raises(ChatTemplateError, match="budget"):
            list(engine.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}])))
        events = list(engine.generate(GenerationRequest(prompt="Hello", sampling=SamplingParams(temperature=0),
                                                        max_tokens=3)))
        assert events[-1].reason == "length"
    finally:
        engine.runtime.close()


def test_the_server_keeps_serving_after_a_hostile_template(smollm2_path, tmp_path):
    import httpx
    import openai

    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService
    from app.wiring import start_worker
    from runtimes.runtime import LoadOptions
    from test_untrusted_gguf import write_gguf_with_template

    evil = write_gguf_with_template(smollm2_path, tmp_path / "evil.gguf", HOSTILE["nested ranges"])
    paths = {"evil": str(evil), "good": str(smollm2_path)}
    service = ModelService("evil", models=lambda: list(paths),
                           open_worker=lambda name: start_worker(paths[name], options=LoadOptions(n_ctx=1024)))
    server = LanternServer(service, ServerSettings(port=0)).start()
    base = server.base_url.removesuffix("/v1")
    try:
        deadline = time.monotonic() + 120
        while httpx.get(base + "/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="evil", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert "budget" in e.value.message
        assert httpx.get(base + "/health").json() == {"status": "ready", "model": "evil"}  # and it is: see next
        r = client.completions.create(model="evil", prompt="Hello", max_tokens=2, temperature=0)
        assert r.choices[0].text is not None
        r = client.chat.completions.create(model="good", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert r.choices[0].message.content is not None  # another model loads and answers
    finally:
        server.stop()  # the engine thread came back, so it stops (the autouse fixture fails on a thread left running)


def test_a_looping_template_costs_its_time_budget_once_per_load_and_once_per_request():
    """The budget is the load's and the request's, not each render's: the capability probes render a template a
    dozen times and a request twice, and a template that loops used to cost 1 s for each (16 s for one load and
    one request here; issue 32 saw a request held 81 s). The deadline below is far past two budgets and far short
    of the old cost (13 probes and 2 renders of at least 1 s each), so a busy machine passes it and the old code
    cannot."""
    loop = "{% set s = 'a' * 4000000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    limits = TemplateLimits(seconds=1.0)
    t0 = time.monotonic()
    template = ChatTemplate(loop, limits=limits)
    with pytest.raises(ChatTemplateError, match="budget"):
        template.render_parts(MESSAGES)
    assert time.monotonic() - t0 < 10
