"""The same engine on both backends (llama.cpp and MLX), on the same SmolLM2 weights.

MLX runs on the CPU here at roughly 200 ms a token (its Linux wheel has reference BLAS and no fast
quantized kernels), so prompts and replies stay short.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import assert_same_up_to_near_tie, load, load_mlx, reference_greedy, run

from basics.errors import ContextOverflowError, InvalidRequestError
from engine.engine import Engine, EngineOptions
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)
SYSTEM = {"role": "system", "content": "You are brief."}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_the_same_prompt_agrees_on_both_backends(smollm2_path, smollm2_mlx_path):
    """Parity: greedy on llama.cpp and on MLX agree on the first 20 tokens, up to near ties."""
    cpp, mlx = load(smollm2_path), load_mlx(smollm2_mlx_path)
    try:
        prompt = cpp.tokenize("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                              add_bos=False)
        assert mlx.tokenize(cpp.detokenize(prompt), add_bos=False) == prompt
        ref, gaps = reference_greedy(cpp, prompt, 20)
        other, _ = reference_greedy(mlx, prompt, 20)
        assert len(ref) >= 8, ref  # a real answer, not an immediate end
        assert_same_up_to_near_tie(ref, gaps, other)
        assert len(other) >= 8, other
    finally:
        cpp.close()
        mlx.close()


def test_the_tokenizers_agree(smollm2_path, smollm2_mlx_path):
    cpp, mlx = load(smollm2_path), load_mlx(smollm2_mlx_path)
    try:
        texts = ["Hello world", "def f(x):\n    return x**2  # 12345 and 3.14159", "Ünïcödé 日本語 🎉",
                 "   spaces\t\ttabs\r\n", "I'm he's they'll WE'RE", "<|im_start|>user\nhi<|im_end|>"]
        for text in texts:
            for special in (True, False):
                assert mlx.tokenize(text, add_bos=True, parse_special=special) == \
                    cpp.tokenize(text, add_bos=True, parse_special=special), (text, special)
        assert all(mlx.token_bytes(t) == cpp.token_bytes(t) for t in range(cpp.n_vocab))
        assert mlx.special == cpp.special
        assert mlx.chat_template == cpp.chat_template
    finally:
        cpp.close()
        mlx.close()


def test_a_second_turn_prefills_only_its_new_tokens(any_runtime):
    engine = Engine(any_runtime, options=EngineOptions(prompt_lookup=False))
    turn1 = [SYSTEM, user("Name a color.")]
    reply, _, fin1 = run(engine, GenerationRequest(messages=turn1, sampling=GREEDY, max_tokens=6))
    assert fin1.stats.cached_tokens == 0 and fin1.stats.backend == any_runtime.name
    turn2 = turn1 + [{"role": "assistant", "content": reply}, user("Another one.")]
    _, ids2, fin2 = run(engine, GenerationRequest(messages=turn2, sampling=GREEDY, max_tokens=6))
    s = fin2.stats
    assert s.cached_tokens >= fin1.stats.prompt_tokens + 1
    assert s.prefill_tokens == s.prompt_tokens - s.cached_tokens <= 20  # the new turn and its markers
    # the same reply as a cold run of the same prompt
    prompt2 = engine.cached_tokens[: s.prompt_tokens]
    ref, gaps = reference_greedy(any_runtime, prompt2, 6)
    assert_same_up_to_near_tie(ref, gaps, ids2, any_runtime.special.end_of_turn)


def test_switching_back_restores_the_conversation(any_runtime):
    engine = Engine(any_runtime, options=EngineOptions(prompt_lookup=False))
    a = [SYSTEM, user("Summarise this: the quick brown fox jumps over the lazy dog, then the dog wakes up, "
                      "chases the fox around the farm, past the barn, the pond and the orchard, and finally both fall "
                      "asleep together under an old oak tree at the far end of the long green meadow.")]
    b = [SYSTEM, user("Hi.")]
    reply, _, fin_a = run(engine, GenerationRequest(messages=a, sampling=GREEDY, max_tokens=3))
    assert fin_a.stats.prompt_tokens >= 64  # long enough to be saved when b pushes it out
    run(engine, GenerationRequest(messages=b, sampling=GREEDY, max_tokens=2))
    a2 = a + [{"role": "assistant", "content": reply}, user("Shorter.")]
    _, _, fin = run(engine, GenerationRequest(messages=a2, sampling=GREEDY, max_tokens=2))
    assert fin.stats.restored_tokens >= fin_a.stats.prompt_tokens
    assert fin.stats.prefill_tokens <= 20  # the reply and the new turn


def test_prompt_lookup_keeps_greedy_replies_identical(any_runtime):
    text = "red green blue red green blue red green blue red green"
    request = GenerationRequest(prompt=text, sampling=GREEDY, max_tokens=16)
    plain_ids = run(Engine(any_runtime, options=EngineOptions(prompt_lookup=False)), request)[1]
    any_runtime.reset()
    forced = Engine(any_runtime, options=EngineOptions(adaptive_draft=False, draft_max=4))
    ids, fin = (lambda r: (r[1], r[2]))(run(forced, request))
    assert fin.stats.drafted_tokens > 0 and fin.stats.accepted_tokens > 0
    assert fin.stats.tokens_per_forward > 1
    ref, gaps = reference_greedy(any_runtime, any_runtime.tokenize(text, add_bos=any_runtime.special.add_bos), 16)
    assert_same_up_to_near_tie(ref, gaps, plain_ids)
    assert_same_up_to_near_tie(ref, gaps, ids)


def test_stop_strings_end_the_reply(any_runtime):
    engine = Engine(any_runtime, options=EngineOptions(prompt_lookup=False))
    request = GenerationRequest(prompt="Monday, Tuesday, Wednesday,", sampling=GREEDY, max_tokens=8)
    full, _, _ = run(engine, request)
    assert "Thursday" in full, full
    cut, _, fin = run(engine, GenerationRequest(prompt=request.prompt, sampling=GREEDY, max_tokens=8,
                                                stop=["ursd"]))
    assert fin.reason == "stop" and cut == full[: full.index("ursd")]


def test_cancel_stops_at_once_and_the_engine_goes_on(any_runtime):
    engine = Engine(any_runtime)
    cancel = threading.Event()
    events = []
    for event in engine.generate(GenerationRequest(prompt="Once upon a time", sampling=GREEDY, max_tokens=50),
                                 cancel=cancel):
        events.append(event)
        cancel.set()
    assert events[-1].reason == "cancelled" and events[-1].stats.completion_tokens <= 2
    assert run(engine, GenerationRequest(prompt="Hello", sampling=GREEDY, max_tokens=2))[2].reason == "length"


@pytest.mark.parametrize("kwargs,error", [
    (dict(messages=[]), InvalidRequestError),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), InvalidRequestError),
    (dict(prompt="hi", max_tokens=0), InvalidRequestError),
    (dict(prompt="word " * 2100), ContextOverflowError),
])
def test_bad_input_is_a_clear_error_on_both_backends(any_runtime, kwargs, error):
    engine = Engine(any_runtime, options=EngineOptions(prompt_lookup=False))
    with pytest.raises(error):
        list(engine.generate(GenerationRequest(sampling=GREEDY, **kwargs)))
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        any_runtime.forward([any_runtime.n_vocab], any_runtime.n_past)
    with pytest.raises(InvalidRequestError, match="fit the context"):
        any_runtime.forward([1] * (any_runtime.n_ctx + 1), 0)
    assert run(engine, GenerationRequest(prompt="Hello", sampling=GREEDY, max_tokens=2))[2].reason == "length"


def test_rows_truncate_and_saved_states(any_runtime):
    rt = any_runtime
    prompt = rt.tokenize("The sky is blue and the grass is", add_bos=True)
    last = rt.forward(prompt, 0)
    rt.truncate(0)
    rows = rt.forward(prompt, 0, rows=[len(prompt) - 1, 2])
    assert rows.shape == (2, rt.n_vocab) and np.argmax(rows[0]) == np.argmax(last[0])
    state = rt.save_state()
    nxt = int(np.argmax(last[0]))
    after = rt.forward([nxt], rt.n_past)
    assert rt.truncate(3) and rt.n_past == 3
    rt.restore_state(state, len(prompt))
    assert rt.n_past == len(prompt)
    again = rt.forward([nxt], rt.n_past)
    assert np.argmax(again[0]) == np.argmax(after[0])
    np.testing.assert_allclose(again[0], after[0], atol=1e-3)
    with pytest.raises(InvalidRequestError):
        rt.forward([nxt], 0)  # must append at n_past
