"""Gemma 3 270M base: a second architecture, a 262k vocabulary, and no chat template."""
from __future__ import annotations

import pytest
from conftest import assert_same_up_to_near_tie, load, reference_greedy

from engine.engine import Engine
from engine.events import GenerationRequest, TextDelta
from engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def gemma(gemma_path):
    rt = load(gemma_path, n_ctx=1024)
    yield rt
    rt.close()


def test_gemma_has_no_template_and_chats_through_the_fallback(gemma):
    engine = Engine(gemma)
    assert gemma.chat_template is None and engine.template.is_fallback
    assert gemma.n_vocab > 200_000
    events = list(engine.generate(GenerationRequest(messages=[{"role": "user", "content": "Hi"}],
                                                    sampling=GREEDY, max_tokens=5, stop=["User:"])))
    assert events[-1].reason in ("stop", "length")
    assert "User: Hi\nAssistant:" in engine.runtime.detokenize(engine.cached_tokens)


def test_gemma_greedy_matches_plain_decoding_and_reuses_its_prompt(gemma):
    engine = Engine(gemma)
    code = "def add(a, b):\n    return a + b\n\n"
    prompt = f"Here is some code:\n{code}Here is the same code again:\n"
    events = list(engine.generate(GenerationRequest(prompt=prompt, sampling=GREEDY, max_tokens=16)))
    ids = [t for e in events if isinstance(e, TextDelta) for t in e.tokens]
    prompt_ids = engine.cached_tokens[: events[-1].stats.prompt_tokens]
    ref, gaps = reference_greedy(gemma, prompt_ids, 16)
    assert_same_up_to_near_tie(ref, gaps, ids, gemma.special.end_of_turn)
    engine.forget_cache()
    list(engine.generate(GenerationRequest(prompt=prompt, sampling=GREEDY, max_tokens=4)))
    final = list(engine.generate(GenerationRequest(prompt=prompt + "def", sampling=GREEDY, max_tokens=4)))[-1]
    assert final.stats.cached_tokens >= len(prompt_ids) - 1 and final.stats.prefill_tokens <= 3


def test_a_base_model_in_the_plain_format_stops_at_the_next_turn(gemma):
    """It writes the next "User:" turn itself; the reply ends there (reason stop), not at max_tokens."""
    engine = Engine(gemma)
    events = list(engine.generate(GenerationRequest(
        messages=[{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris."},
                  {"role": "user", "content": "And of Italy?"}], sampling=GREEDY, max_tokens=120)))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    end = events[-1]
    assert end.reason == "stop" and end.stop_sequence is None, (end, text)  # no client's stop string was met
    assert "User:" not in text and "Assistant:" not in text and end.stats.completion_tokens < 120
    # a raw completion is the user's own text: it runs on as asked
    raw = list(engine.generate(GenerationRequest(prompt="User: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:",
                                                 sampling=GREEDY, max_tokens=40)))
    assert "\nUser:" in "".join(e.text for e in raw if isinstance(e, TextDelta)) and raw[-1].reason == "length"
