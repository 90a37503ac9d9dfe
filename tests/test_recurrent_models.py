"""Recurrent and hybrid models (tiny random-weight GGUFs: Mamba-2, all recurrent; LFM2, convolutions between
attention layers; Qwen3.5, Gated DeltaNet in three layers of four; Nemotron-H, Mamba-2, feed-forward and attention
layers): their state cannot be cut back, and the runtime says so at load, so prompt lookup is off and nothing fails mid-reply; a reply that extends the cached
conversation still reuses it, and what is recomputed equals a fresh computation."""
from __future__ import annotations

import pytest

from backends.engine import Engine
from backends.events import Finished, GenerationRequest
from backends.sampling import SamplingParams
from backends.state_cache import common_prefix_len
from conftest import assert_same_up_to_near_tie, load, load_mlx, reference_greedy, run
from tiny_models import write_lfm2, write_mamba2, write_mlx, write_nemotron_h, write_qwen35

GREEDY = SamplingParams(temperature=0, seed=1)


FAMILIES = {"mamba2": write_mamba2, "lfm2": write_lfm2, "qwen35": write_qwen35, "nemotron_h": write_nemotron_h}
MLX_FAMILIES = ["lfm2", "gemma3_text"]  # on MLX: a convolution state (ArraysCache); a 16-token sliding window


@pytest.fixture(scope="module", params=list(FAMILIES) + [f"mlx-{k}" for k in MLX_FAMILIES])
def mamba2_path(request, smollm2_path, tmp_path_factory):
    if request.param.startswith("mlx-"):
        tokenizer = request.getfixturevalue("smollm2_mlx_path")
        return write_mlx(request.param[4:], tokenizer, tmp_path_factory.mktemp("tiny") / request.param)
    write = FAMILIES[request.param]
    return write(smollm2_path, tmp_path_factory.mktemp("tiny") / f"{request.param}.gguf")


def load_any(path):
    return load_mlx(path) if path.is_dir() else load(path)


def test_a_recurrent_model_says_how_far_it_rolls_back_and_drafts_only_that_far(mamba2_path):
    """Mamba-2 rolls back nothing: prompt lookup is off, said once. LFM2, Qwen3.5 and Nemotron-H keep llama.cpp's
    snapshots of their last states: drafts stay within them, and the reply is the same as plain greedy decoding."""
    rt = load_any(mamba2_path)  # the full load path: header checks and the child-process test load
    try:
        assert not rt.can_truncate and getattr(rt, "sliding_window", 0) == 0
        engine = Engine(rt)
        chat = [{"role": "user", "content": "Copy this: " + "alpha beta gamma delta " * 20}]
        plain, _, _ = run(engine, GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=48))
        # A prediction of the reply with every fifth word changed: drafts of the others are accepted, those of the
        # changed words rejected and rolled back, whatever the random weights say.
        words = plain.split(" ")
        changed = " ".join("zebra" if i % 5 == 3 else w for i, w in enumerate(words))
        request = GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=48, prompt_lookup=True,
                                    prediction=changed)
        _, tokens, final = run(engine, request)
        assert final.reason in ("stop", "length")
        if rt.rollback_tokens == 0:
            assert not engine.options.prompt_lookup and engine.notes and final.stats.drafted_tokens == 0
        else:
            assert engine.options.draft_max <= rt.rollback_tokens - 2
            assert 0 < final.stats.accepted_tokens < final.stats.drafted_tokens  # accepted, and rolled back
            prompt = engine.cached_tokens[: final.stats.prompt_tokens]
            reference, gaps = reference_greedy(rt, prompt, 48)
            assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
    finally:
        rt.close()


def test_turns_that_extend_the_conversation_reuse_it_and_match_a_fresh_run(mamba2_path):
    rt = load_any(mamba2_path)
    try:
        engine = Engine(rt)
        chat = [{"role": "user", "content": "Hello there, how are you?"}]
        text, _, first = run(engine, GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=8))
        chat += [{"role": "assistant", "content": text}, {"role": "user", "content": "And tomorrow?"}]
        text2, tokens, second = run(engine, GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=8))
        assert second.stats.cached_tokens >= first.stats.prompt_tokens  # only the new turn was computed
        prompt = engine.cached_tokens[: second.stats.prompt_tokens]
        reference, gaps = reference_greedy(rt, prompt, 8)
        assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
        # a regenerate would cut back, which the state cannot: the checkpoint at the prompt's end comes back instead
        _, again, third = run(engine, GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=8))
        assert third.stats.restored_tokens == third.stats.prompt_tokens == second.stats.prompt_tokens
        assert third.stats.prefill_tokens == 0 and again == tokens
        # an edit of the last message goes back to the checkpoint of the turn before it
        edited = [*chat[:-1], {"role": "user", "content": "And next week?"}]
        _, _, fourth = run(engine, GenerationRequest(messages=edited, sampling=GREEDY, max_tokens=4))
        assert fourth.stats.restored_tokens == first.stats.prompt_tokens
        # another chat, then back to this one with a new turn: it resumes from its checkpoint, not from zero
        run(engine, GenerationRequest(messages=[{"role": "user", "content": "Something else entirely."}],
                                      sampling=GREEDY, max_tokens=4))
        back = [*chat, {"role": "assistant", "content": text2}, {"role": "user", "content": "Thanks."}]
        _, back_tokens, fifth = run(engine, GenerationRequest(messages=back, sampling=GREEDY, max_tokens=4))
        assert fifth.stats.restored_tokens >= second.stats.prompt_tokens
        assert fifth.stats.prefill_tokens == fifth.stats.prompt_tokens - fifth.stats.restored_tokens
        reference, gaps = reference_greedy(rt, engine.cached_tokens[: fifth.stats.prompt_tokens], 4)
        assert_same_up_to_near_tie(reference, gaps, back_tokens, rt.special.end_of_turn)
    finally:
        rt.close()


@pytest.fixture(scope="module")
def pure_mamba2(smollm2_path, tmp_path_factory):
    return write_mamba2(smollm2_path, tmp_path_factory.mktemp("tiny") / "pure-mamba2.gguf")


def test_a_rollback_that_fails_ends_the_reply_with_an_error_event(pure_mamba2):
    """Were a runtime to claim a rollback it cannot do, the reply ends with an error the client sees."""
    rt = load(pure_mamba2)
    try:
        engine = Engine(rt)
        rt.can_truncate = True  # a runtime that misreports itself
        events = list(engine.generate(GenerationRequest(
            messages=[{"role": "user", "content": "Say: " + "one two three four " * 12}], sampling=GREEDY,
            max_tokens=40, prompt_lookup=True)))
        final = events[-1]
        assert isinstance(final, Finished) and rt.rollback_tokens == 0
        assert final.reason == "error" and "could not drop rejected draft tokens" in final.error
    finally:
        rt.close()


def test_the_endpoint_serves_a_recurrent_model_streamed_and_not(mamba2_path):
    import openai

    from agent_models import start_server

    server = start_server({"tiny-mamba2": mamba2_path})
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ask = dict(model="tiny-mamba2", messages=[{"role": "user", "content": "Repeat: a b c a b c a b c"}],
                   max_tokens=16, temperature=0, seed=1)
        whole = client.chat.completions.create(**ask)
        assert whole.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.chat.completions.create(stream=True, **ask))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    finally:
        server.stop()


def test_a_new_conversation_with_the_same_system_prompt_starts_from_its_checkpoint(mamba2_path):
    """The state where the system prompt ends is kept: the next conversation that shares it computes only its own
    messages, and answers as a fresh computation would."""
    rt = load_any(mamba2_path)
    try:
        engine = Engine(rt)
        system = {"role": "system", "content": "You are a careful assistant for a small bakery. " * 8}
        _, _, first = run(engine, GenerationRequest(messages=[system, {"role": "user", "content": "Hello!"}],
                                                    sampling=GREEDY, max_tokens=6))
        first_prompt = engine.cached_tokens[: first.stats.prompt_tokens]
        other = [system, {"role": "user", "content": "What bread do you bake on Sundays?"}]
        _, tokens, second = run(engine, GenerationRequest(messages=other, sampling=GREEDY, max_tokens=6))
        prompt = engine.cached_tokens[: second.stats.prompt_tokens]
        shared = common_prefix_len(first_prompt, prompt)  # the system prompt and the user turn's header
        assert shared > 80 and second.stats.restored_tokens == second.stats.cached_tokens == shared
        assert second.stats.prefill_tokens == second.stats.prompt_tokens - shared
        reference, gaps = reference_greedy(rt, prompt, 6)
        assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)
    finally:
        rt.close()
