"""Recurrent and hybrid models (tiny random-weight GGUFs: Mamba-2, all recurrent; LFM2, convolutions between
attention layers; Qwen3.5, Gated DeltaNet in three layers of four; Nemotron-H, Mamba-2, feed-forward and attention
layers): their state cannot be cut back, and the runtime says so at load, so prompt lookup is off and nothing fails mid-reply; a reply that extends the cached
conversation still reuses it, and what is recomputed equals a fresh computation."""
from __future__ import annotations

import pytest
from conftest import assert_same_up_to_near_tie, load, load_mlx, reference_greedy, reply_tokens, run
from tiny_models import write_lfm2, write_mamba2, write_mlx, write_nemotron_h, write_qwen35

from engine.engine import Engine
from engine.events import Finished, GenerationRequest
from engine.sampling import SamplingParams
from engine.state_cache import common_prefix_len

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
        chat = [{"role": "user", "content": "Say: " + "one two three four " * 12}]
        plain, _, _ = run(engine, GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=40))
        # A prediction of the reply with every fifth word changed: its drafts are made whatever the draft policy
        # has learnt, and a changed word's is rejected, whatever the random weights say.
        changed = " ".join("zebra" if i % 5 == 3 else w for i, w in enumerate(plain.split(" ")))
        rt.can_truncate = True  # a runtime that misreports itself
        events = list(engine.generate(GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=40,
                                                        prompt_lookup=True, prediction=changed)))
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


@pytest.fixture(scope="module", params=list(FAMILIES))
def recurrent_gguf(request, smollm2_path, tmp_path_factory):
    return FAMILIES[request.param](smollm2_path, tmp_path_factory.mktemp("tiny") / f"{request.param}-slots.gguf")


def test_recurrent_slots_decode_together_as_alone_and_each_rolls_back_only_within_its_last_decode(recurrent_gguf):
    """Each slot keeps a recurrent state of its own: prompts decoded together give their solo replies, and a slot
    rolls back a rejected draft (fewer tokens than its last decode read: llama.cpp's snapshots are that decode's; it
    would accept more and leave a wrong state) while the others stay as they were. No prefix can be shared."""
    import numpy as np

    from basics.errors import InvalidRequestError

    rt = load(recurrent_gguf, n_ctx=512, slots=3)
    alone = load(recurrent_gguf, n_ctx=512)
    try:
        prompts = [rt.tokenize(t, add_bos=True) for t in ("The lighthouse keeper climbed", "def fib(n):",
                                                          "Paris is the capital of")]
        refs = [reference_greedy(alone, p, 8) for p in prompts]
        rt.reset()
        outs = rt.forward_seqs([(s, p, None) for s, p in enumerate(prompts)])
        together = [[int(np.argmax(o[0]))] for o in outs]
        for _ in range(7):
            outs = rt.forward_seqs([(s, [t[-1]], None) for s, t in enumerate(together)])
            for t, o in zip(together, outs):
                t.append(int(np.argmax(o[0])))
        for (reference, gaps), tokens in zip(refs, together):
            assert_same_up_to_near_tie(reference, gaps, tokens, rt.special.end_of_turn)

        draft = [5, 6, 7, 8, 10]
        for back in range(1, len(draft) + 1):
            held = [rt.seq_past(s) for s in range(3)]
            rt.forward_seqs([(0, [together[0][-1]], None), (1, draft, list(range(len(draft)))),
                             (2, [together[2][-1]], None)])
            keep = held[1] + len(draft) - back
            done = rt.truncate_seq(1, keep)
            assert done == (back < len(draft) and back <= rt.rollback_tokens), (back, rt.rollback_tokens)
            if done:
                [after] = rt.forward_seqs([(1, [9], None)])
                alone.reset()
                fresh = alone.forward(prompts[1] + together[1][:7] + draft[:len(draft) - back] + [9], 0)
                assert np.abs(after[0] - fresh[0]).max() < 0.05  # a wrong state differs by tens
                assert not rt.truncate_seq(1, keep) and rt.seq_past(1) == keep + 1  # a one-token decode: no snapshot
            else:
                assert rt.seq_past(1) == held[1] + len(draft)  # refused: nothing dropped
            assert (rt.seq_past(0), rt.seq_past(2)) == (held[0] + 1, held[2] + 1)
            rt.clear_seq(1)
            rt.forward_seqs([(1, prompts[1] + together[1][:7], None)])
        with pytest.raises(InvalidRequestError, match="recurrent"):
            rt.copy_seq(0, 1, rt.seq_past(0))

        saved, n = rt.save_seq(2), rt.seq_past(2)
        [before] = rt.forward_seqs([(2, [11], None)])
        rt.restore_seq(2, saved, n)
        [again] = rt.forward_seqs([(2, [11], None)])
        assert np.allclose(before, again, atol=1e-4)
    finally:
        rt.close()
        alone.close()


def test_a_recurrent_model_answers_several_conversations_at_once_each_as_alone(recurrent_gguf):
    """Lantern gives a recurrent or hybrid model its 4 slots (their states are small beside the model); two replies
    at once, each drafting from a prediction (rolled back where the draft is wrong), equal their solo greedy replies."""
    from app.wiring import AUTO, start_worker
    from runtimes.runtime import LoadOptions
    from engine.slots import SlotWorker

    worker = start_worker(str(recurrent_gguf), options=LoadOptions(n_ctx=1024, slots=AUTO))
    alone = load(recurrent_gguf, n_ctx=1024)
    try:
        chats = [[{"role": "user", "content": f"Copy this: {words * 12}"}] for words in ("alpha beta gamma delta ",
                                                                                         "one two three four ")]
        plain = [run(Engine(alone), GenerationRequest(messages=c, sampling=GREEDY, max_tokens=32)) for c in chats]
        gens = []
        for chat, (text, _t, _f) in zip(chats, plain):  # every fifth word of the prediction wrong
            changed = " ".join("zebra" if i % 5 == 3 else w for i, w in enumerate(text.split(" ")))
            gens.append(worker.submit(GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=32,
                                                        prompt_lookup=True, prediction=changed)))
        results = [reply_tokens(g) for g in gens]
        assert isinstance(worker.inner, SlotWorker) and worker.inner.runtime.slots == 4
        engine = Engine(alone)
        for chat, (tokens, final) in zip(chats, results):
            assert final.reason in ("stop", "length"), final
            prompt = engine._prompt_tokens(GenerationRequest(messages=chat, sampling=GREEDY))[0]
            reference, gaps = reference_greedy(alone, prompt, 32)
            assert_same_up_to_near_tie(reference, gaps, tokens, alone.special.end_of_turn)
            if alone.rollback_tokens:
                assert 0 < final.stats.accepted_tokens < final.stats.drafted_tokens  # drafts kept and rolled back
    finally:
        worker.close()
        alone.close()

