"""Sliding-window models (Gemma 3 here, the real 270M): a saved state holds only the last window of the sliding
layers, so it may not be cut back below what those layers hold; the runtime says so instead of answering from a
wrong cache, and the engine recomputes."""
from __future__ import annotations

import numpy as np
from conftest import assert_same_up_to_near_tie, load, reference_greedy, run

from engine.engine import Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams
from engine.state_cache import StateCache

TEXT = " ".join(f"Item {i} is a {['red', 'green', 'blue'][i % 3]} box of {i * 7 % 13} apples." for i in range(90))


def feed(rt, tokens):
    for lo in range(0, len(tokens), rt.n_batch):
        rt.forward(tokens[lo:lo + rt.n_batch], rt.n_past)


def test_a_restored_state_is_cut_back_only_where_the_window_allows(gemma_path):
    rt = load(gemma_path, n_ctx=2048)
    try:
        assert rt.sliding_window > 0
        tokens = rt.tokenize(TEXT, add_bos=True)[:812]
        assert len(tokens) == 812 and 812 > rt.sliding_window
        feed(rt, tokens)
        state = rt.save_state()
        assert rt.truncate(200)  # the live cache keeps every position (swa_full): an exact cut
        cut = rt.forward([tokens[200]], 200)[0]
        rt.reset()
        feed(rt, tokens[:200])
        fresh = rt.forward([tokens[200]], 200)[0]
        assert np.allclose(cut, fresh, atol=1e-4)
        rt.restore_state(state, 812)
        assert not rt.truncate(200)  # the restored sliding layers hold only the last window: no cut below it
        assert rt.n_past == 812 and rt.truncate(812)
    finally:
        rt.close()


def test_a_branch_sharing_only_the_start_of_a_saved_state_is_computed_right(gemma_path):
    rt = load(gemma_path, n_ctx=2048)
    try:
        engine = Engine(rt, state_cache=StateCache())
        greedy = SamplingParams(temperature=0, seed=1)
        head = TEXT[:900]
        long_a = head + " " + TEXT[900:2600]
        run(engine, GenerationRequest(prompt=long_a, sampling=greedy, max_tokens=2))  # conversation A
        run(engine, GenerationRequest(prompt="Something else entirely. " * 30, sampling=greedy, max_tokens=2))
        branch = head + " Now count the green boxes:"
        text, tokens, final = run(engine, GenerationRequest(prompt=branch, sampling=greedy, max_tokens=12))
        assert final.stats.restored_tokens == 0  # A's state was not cut back to the shared start
        prompt = engine.cached_tokens[: final.stats.prompt_tokens]
        reference, gaps = reference_greedy(rt, prompt, 12)
        assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
    finally:
        rt.close()


def test_switching_back_to_a_chat_past_the_window_restores_a_checkpoint_and_answers_right(gemma_path):
    rt = load(gemma_path, n_ctx=2048)
    try:
        engine = Engine(rt, state_cache=StateCache())
        greedy = SamplingParams(temperature=0, seed=1)
        chat = [{"role": "system", "content": TEXT[:2600]}, {"role": "user", "content": "How many boxes are red?"}]
        reply, _, first = run(engine, GenerationRequest(messages=chat, sampling=greedy, max_tokens=8))
        assert first.stats.prompt_tokens > rt.sliding_window
        run(engine, GenerationRequest(messages=[{"role": "user", "content": "Hi! " * 60}], sampling=greedy,
                                      max_tokens=4))  # another chat takes the cache
        chat += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And blue?"}]
        _, tokens, back = run(engine, GenerationRequest(messages=chat, sampling=greedy, max_tokens=8))
        # the checkpoint at the first prompt's end came back whole: only the reply and the new turn were computed
        assert back.stats.restored_tokens >= first.stats.prompt_tokens
        assert back.stats.prefill_tokens < back.stats.prompt_tokens - first.stats.prompt_tokens + 8
        prompt = engine.cached_tokens[: back.stats.prompt_tokens]
        reference, gaps = reference_greedy(rt, prompt, len(tokens) if back.reason == "stop" else 8)  # a base model stops at its next "User:" turn
        assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
    finally:
        rt.close()


def test_the_small_window_cache_refuses_far_cuts_and_allows_near_ones(gemma_path):
    """llama.cpp's small sliding-window cache (window + a batch) is used: a cut far back is refused and computed
    again, a cut near the end (a regenerate, a rejected draft) stays cheap; both answer like a fresh run."""
    rt = load(gemma_path, n_ctx=4096)
    try:
        engine = Engine(rt, state_cache=StateCache())
        greedy = SamplingParams(temperature=0, seed=1)
        long_text = (TEXT + " ") * 2
        _, tokens, first = run(engine, GenerationRequest(prompt=long_text, sampling=greedy, max_tokens=6))
        assert first.stats.prompt_tokens > 2 * rt.sliding_window + 512  # past what the small cache holds
        _, again, regen = run(engine, GenerationRequest(prompt=long_text, sampling=greedy, max_tokens=6))
        assert regen.stats.prefill_tokens <= 1 and again == tokens  # a near cut: nothing computed again
        far = long_text[:400] + " Which items are blue?"
        _, tokens, cut = run(engine, GenerationRequest(prompt=far, sampling=greedy, max_tokens=8))
        assert cut.stats.cached_tokens == 0  # the sliding layers no longer hold those positions: computed again
        prompt = engine.cached_tokens[: cut.stats.prompt_tokens]
        reference, gaps = reference_greedy(rt, prompt, 8)
        assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
    finally:
        rt.close()
