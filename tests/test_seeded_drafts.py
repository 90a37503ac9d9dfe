"""Seeded replies draft by a fixed cost curve of the device they run on (engine/engine.py): eagerly on a GPU, where a
pass of a few tokens costs about what one does, cautiously on a CPU; on either, their draft lengths follow from their
text alone, so the same request gives the same tokens every time."""
from __future__ import annotations

from conftest import run

from engine.engine import NOMINAL_COSTS, NOMINAL_GPU_COSTS, Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

DOC = ("The lighthouse stood on the northern cliff. Its keeper climbed ninety steps every evening to light the lamp, "
       "and every morning he wrote the weather in a green book.")


def _copy(engine: Engine, seed: int):
    request = GenerationRequest(messages=[{"role": "user", "content": f"Repeat exactly:\n\n{DOC}"}], max_tokens=48,
                                sampling=SamplingParams(temperature=0.8, seed=seed), prompt_lookup=True)
    return run(engine, request)


def test_seeded_replies_draft_by_the_curve_of_their_device(smollm2):
    engine = Engine(smollm2)
    assert smollm2.on_gpu is False or smollm2.on_gpu is True
    curves = {}
    for on_gpu in (False, True):
        smollm2.on_gpu = on_gpu
        policy = engine._lookup(seeded=True).policy
        curves[on_gpu] = [policy.cost(n) / policy.cost(1) for n in (2, 4, 8, 16)]
        assert not policy.learn_costs  # never corrected by timing
    assert curves[False] == [NOMINAL_COSTS[n] for n in (2, 4, 8, 16)]
    assert curves[True] == [NOMINAL_GPU_COSTS[n] for n in (2, 4, 8, 16)]


def test_a_seeded_reply_drafts_more_on_a_gpu_and_repeats_itself_on_each(smollm2):
    engine = Engine(smollm2)
    drafted = {}
    for on_gpu in (False, True):
        smollm2.on_gpu = on_gpu  # the policy follows the device flag alone: this CPU stands in for a GPU here
        text, tokens, final = _copy(engine, 11)
        again, tokens_again, final_again = _copy(engine, 11)
        assert tokens == tokens_again and final.stats.drafted_tokens == final_again.stats.drafted_tokens
        drafted[on_gpu] = final.stats.drafted_tokens
    assert drafted[True] > drafted[False], drafted
