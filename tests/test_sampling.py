import numpy as np
import pytest

from basics.errors import InvalidRequestError
from engine.sampling import SamplingParams, make_sampler


def logits(n=100, seed=0):
    return np.random.default_rng(seed).normal(size=n).astype(np.float32)


def test_greedy_is_argmax():
    x = logits()
    assert make_sampler(SamplingParams(temperature=0))(x, []) == int(np.argmax(x))


def test_seed_reproduces_a_sampled_sequence():
    x = logits()
    a, b, c = (make_sampler(SamplingParams(temperature=1.0, top_k=0, min_p=0.0, seed=s)) for s in (1, 1, 2))
    seq_a = [a(x, []) for _ in range(50)]
    assert seq_a == [b(x, []) for _ in range(50)]
    assert seq_a != [c(x, []) for _ in range(50)]


def test_top_k_one_is_greedy_and_top_k_limits_choices():
    x = logits()
    top5 = set(np.argsort(-x)[:5].tolist())
    s = make_sampler(SamplingParams(temperature=2.0, top_k=5, top_p=1.0, min_p=0.0, seed=3))
    assert {s(x, []) for _ in range(300)} <= top5
    s1 = make_sampler(SamplingParams(temperature=2.0, top_k=1, seed=3))
    assert {s1(x, []) for _ in range(20)} == {int(np.argmax(x))}


def test_min_p_and_top_p_cut_the_tail():
    x = np.array([5.0, 4.9, 0.0, -1.0], dtype=np.float32)
    s = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5, seed=0))
    assert {s(x, range(i)) for i in range(200)} == {0, 1}  # one draw per position
    s = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0, seed=0))
    assert {s(x, range(i)) for i in range(200)} == {0}


def test_sampling_follows_the_softmax():
    x = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32))
    s = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7))
    counts = np.bincount([s(x, range(i)) for i in range(6000)], minlength=3) / 6000
    assert np.allclose(counts, [0.5, 0.3, 0.2], atol=0.03)


def test_a_draw_depends_on_the_seed_and_the_position_only():
    x = np.log(np.full(50, 1 / 50, dtype=np.float32))
    a = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=42))
    b = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=42))
    first = [a(x, range(i)) for i in range(100)]
    for i in range(0, 100, 7):  # b draws at other positions in between (as drafting would): no shift
        b(x, range(1000 + i))
    assert [b(x, range(i)) for i in range(100)] == first
    c = make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=43))
    assert [c(x, range(i)) for i in range(100)] != first
    unseeded = [make_sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)) for _ in range(2)]
    assert [unseeded[0](x, range(i)) for i in range(100)] != [unseeded[1](x, range(i)) for i in range(100)]


def test_repetition_and_presence_penalties_push_seen_tokens_down():
    x = np.array([2.0, 1.9, 0.0], dtype=np.float32)
    assert make_sampler(SamplingParams(temperature=0, repeat_penalty=1.5))(x, [0]) == 1
    assert make_sampler(SamplingParams(temperature=0, presence_penalty=0.5))(x, [0]) == 1
    assert make_sampler(SamplingParams(temperature=0, frequency_penalty=0.06))(x, [0, 0]) == 1
    assert make_sampler(SamplingParams(temperature=0, frequency_penalty=0.06))(x, [0]) == 0
    # outside the penalty window nothing happens
    assert make_sampler(SamplingParams(temperature=0, repeat_penalty=1.5, penalty_last_n=1))(x, [0, 2]) == 0


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", float("nan")), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5),
    ("min_p", 1.0), ("repeat_penalty", 0.0), ("presence_penalty", 3.0), ("frequency_penalty", -2.5),
    ("penalty_last_n", -1),
])
def test_bad_values_are_clear_errors(field, value):
    with pytest.raises(InvalidRequestError, match=field):
        make_sampler(SamplingParams(**{field: value}))


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.05, repeat_penalty=5e-324, min_p=0.05, frequency_penalty=0.05),  # found by the fuzzer
    SamplingParams(temperature=5e-324, top_k=0, top_p=1.0, min_p=0.0),
    SamplingParams(temperature=1e-300, repeat_penalty=1e-300, seed=3),
])
def test_values_near_zero_still_give_a_token_and_keep_the_order(params):
    x = logits(seed=4) * 10
    x[7] = 30.0  # the likeliest by far
    # a temperature near zero is all but greedy; a penalty below 1 favours the token already seen, 7
    assert make_sampler(params)(x, [7, 7]) == 7
