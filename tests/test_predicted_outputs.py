"""Predicted outputs (OpenAI's `prediction`): the prediction is a draft source, so the reply is the model's own,
only faster where it follows the prediction."""
from __future__ import annotations

from conftest import assert_same_up_to_near_tie, reference_greedy, run

from engine.engine import Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

CODE = "\n".join(f"def area_{i}(w, h):\n    return w * h * {i}\n" for i in range(10))
EDIT = [{"role": "user", "content": f"Rename area to size in this code:\n\n{CODE}"}]


def test_a_prediction_changes_the_speed_not_the_reply(smollm2):
    engine = Engine(smollm2)
    greedy = SamplingParams(temperature=0, seed=3)
    request = GenerationRequest(messages=EDIT, sampling=greedy, max_tokens=120,
                                prediction=CODE.replace("area", "size"), prompt_lookup=False)
    text, tokens, final = run(engine, request)
    assert final.stats.accepted_prediction_tokens > 10
    assert final.stats.predicted_tokens == len(smollm2.tokenize(CODE.replace("area", "size"), add_bos=False,
                                                                parse_special=False))
    assert final.stats.accepted_tokens >= final.stats.accepted_prediction_tokens
    prompt = engine.cached_tokens[: final.stats.prompt_tokens]
    reference, gaps = reference_greedy(smollm2, prompt, 120)
    assert_same_up_to_near_tie(reference, gaps, tokens, smollm2.special.end_of_turn)


def test_a_wrong_prediction_costs_little_and_is_counted_rejected(smollm2):
    engine = Engine(smollm2)
    request = GenerationRequest(messages=[{"role": "user", "content": "Say hello."}],
                                sampling=SamplingParams(temperature=0, seed=3), max_tokens=20,
                                prediction="Completely unrelated words about tractors.")
    _, _, final = run(engine, request)
    assert final.stats.accepted_prediction_tokens == 0 and final.stats.predicted_tokens > 0
