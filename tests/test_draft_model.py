"""A draft model: a second, small model with the target's vocabulary drafts tokens that the target verifies in one
pass (engine/draft_model.py). Real pairs: the starter drafting for itself, and the starter drafting with a copy of
itself requantized to Q4_0 (tests/draft_models.py), which agrees on most tokens but not all."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import GPU_MODE, assert_plain_greedy, assert_same_up_to_near_tie, load, reference_greedy, run
from benchmarks.requantize import requantized

from app.wiring import plan_load, start_worker
from basics.errors import LanternError, ModelLoadError
from engine.draft_model import DraftModel, VocabularyMismatch
from engine.draft_policy import DraftLengthPolicy
from engine.engine import NOMINAL_COSTS, Engine, EngineOptions
from engine.events import GenerationRequest
from engine.sampling import SamplingParams, make_sampler
from machine.hardware import Hardware
from models.fit import RAM_MARGIN_BYTES, with_draft
from models.info import describe_model
from runtimes.runtime import LoadOptions

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
# Always draft (tests): the policy's choice is tested on its own below.
FORCED = EngineOptions(prompt_lookup=False, adaptive_draft=False, draft_max=6)


@pytest.fixture(scope="module")
def q4_0_copy(smollm2_path, tmp_path_factory):
    return requantized(smollm2_path, tmp_path_factory.mktemp("draft") / "smol-q4_0.gguf")


def _pair(target_path, draft_path, options=FORCED):
    target = load(target_path)
    return Engine(target, options=options, draft_model=DraftModel(load(draft_path), target))


def _greedy(max_tokens=48, messages=STORY):
    return GenerationRequest(messages=messages, max_tokens=max_tokens, sampling=SamplingParams(temperature=0))


@pytest.mark.parametrize("draft", ["itself", "q4_0"])
def test_greedy_text_with_a_draft_model_is_plain_greedy_text(smollm2_path, q4_0_copy, draft):
    engine = _pair(smollm2_path, smollm2_path if draft == "itself" else q4_0_copy)
    try:
        text, tokens, final = run(engine, _greedy())
        prompt = engine.cached_tokens[:final.stats.prompt_tokens]
        reference, gaps = reference_greedy(load(smollm2_path), prompt, 48)
        assert_same_up_to_near_tie(reference, gaps, tokens, engine.runtime.special.end_of_turn)
        drafted, accepted = final.stats.drafts_by_source["draft model"]
        assert (final.stats.drafted_tokens, final.stats.accepted_tokens) == (drafted, accepted)
        assert 0 < accepted < drafted  # drafts were kept, and some rejected (the last step's tail at least)
        if draft == "q4_0":  # another quantization agrees often, not always
            assert accepted / drafted > 0.2
        assert final.stats.tokens_per_forward > 1.5
    finally:
        engine.close()


def test_seeded_sampling_with_a_draft_model_repeats_itself(smollm2_path, q4_0_copy):
    request = GenerationRequest(messages=STORY, max_tokens=40, sampling=SamplingParams(temperature=0.9, seed=7))
    engine = _pair(smollm2_path, q4_0_copy)
    other = _pair(smollm2_path, q4_0_copy)
    try:
        first, again, fresh = run(engine, request), run(engine, request), run(other, request)
        assert first[1] == again[1] == fresh[1]
        drafted, accepted = first[2].stats.drafts_by_source["draft model"]
        assert 0 < accepted < drafted
    finally:
        engine.close()
        other.close()


def _chi_squared_quantile(df: int, p: float = 0.999) -> float:
    """Wilson-Hilferty: the chi-squared distribution's p-quantile (z for p = 0.999 is 3.09)."""
    z = {0.999: 3.090}[p]
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_speculative_sampling_follows_the_targets_distribution(smollm2_path, q4_0_copy):
    """The draft model draws from its own q; each draft is kept with probability min(1, p/q), else the residual is
    drawn: what comes out follows the target's p (chi-squared, fixed seeds: the test gives one answer every run)."""
    target, draft = load(smollm2_path), load(q4_0_copy)
    context = target.tokenize("My favourite fruit is the", add_bos=True)
    p_logits = target.forward(context, 0)[0]
    q_logits = draft.forward(context, 0)[0]
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.01)
    counts: dict[int, int] = {}
    drafted_kept = 0
    n = 3000
    for seed in range(n):
        sampler = make_sampler(replace(params, seed=seed))
        token, q = sampler.draft(q_logits, context)
        out = sampler.judge(p_logits, context, token, q)
        drafted_kept += out == token
        counts[out] = counts.get(out, 0) + 1
    x = p_logits.astype(np.float64) / params.temperature
    p = np.exp(x - x.max())
    p /= p.sum()
    keep = p >= params.min_p * p.max()
    p = np.where(keep, p, 0.0)
    p /= p.sum()
    ids = np.flatnonzero(p)
    expected = p[ids] * n
    big = expected >= 5
    observed = np.array([counts.get(int(i), 0) for i in ids])
    cells_o = [*observed[big], observed[~big].sum()]
    cells_e = [*expected[big], expected[~big].sum()]
    if cells_e[-1] < 5:  # the small ones pooled are too few to be a cell of their own: join the last big one
        cells_o[-2] += cells_o.pop()
        cells_e[-2] += cells_e.pop()
    chi2 = sum((o - e) ** 2 / e for o, e in zip(cells_o, cells_e))
    df = len(cells_e) - 1
    assert df >= 5, df  # a spread distribution, or the test says little
    assert chi2 < _chi_squared_quantile(df), (chi2, df)
    assert sum(counts.get(int(i), 0) for i in ids) == n  # nothing outside the target's candidates
    # speculative sampling keeps the draft more often than a fresh draw from p would equal it
    assert drafted_kept > 0.5 * n
    target.close()
    draft.close()


def _counting(runtime):
    """Count the tokens the runtime computes."""
    fed = []
    forward = runtime.forward

    def counted(tokens, start, **kw):
        fed.append(len(tokens))
        return forward(tokens, start, **kw)

    runtime.forward = counted
    return fed


def test_the_draft_models_cache_follows_the_conversation(smollm2_path, q4_0_copy):
    engine = _pair(smollm2_path, q4_0_copy)
    dm = engine.draft_model
    fed = _counting(dm.runtime)
    try:
        text, tokens, final = run(engine, _greedy(24))
        first = sum(fed)
        chat = STORY + [{"role": "assistant", "content": text}, {"role": "user", "content": "Give him a dog."}]
        fed.clear()
        run(engine, _greedy(24, chat))
        prompt2 = final.stats.prompt_tokens + final.stats.completion_tokens
        # the second turn computes its new tokens and its drafts, not the first turn again
        assert 0 < sum(fed) < first, (sum(fed), first)
        assert dm.cached_tokens[:prompt2 - 4] == engine.cached_tokens[:prompt2 - 4]
        # another conversation, then back: the draft model's state comes back, not computed again
        other = [{"role": "user", "content": "List ten kinds of trees, one per line, with a word on each. " * 3}]
        run(engine, _greedy(24, other))
        fed.clear()
        run(engine, _greedy(24, chat))
        assert sum(fed) < 60, sum(fed)  # the chat's prompt alone is over 80 tokens
        assert len(dm.states) >= 1
    finally:
        engine.close()


def test_on_this_device_the_policy_drafts_with_a_model_only_where_it_pays(smollm2_path, q4_0_copy):
    """Seeded and greedy replies draft by nominal costs: on a CPU, a draft model 80% the target's size never pays
    (it is not even probed); on a GPU, where a pass of 8 tokens costs little more than one, a draft model a
    twentieth of the target's cost does."""
    engine = _pair(smollm2_path, q4_0_copy, options=EngineOptions(prompt_lookup=False))
    try:
        engine.runtime.on_gpu = False  # the nominal CPU curve, whatever this machine has
        policy = DraftLengthPolicy(NOMINAL_COSTS, learn_costs=False)
        assert not policy.could_pay(engine.draft_model.relative_cost * policy.cost(1))
        _, _, final = run(engine, _greedy(40))
        assert final.stats.drafted_tokens == 0
        engine.runtime.on_gpu = True  # the nominal GPU curve (tests/test_seeded_drafts.py does the same)
        engine.draft_model.relative_cost = 0.05
        text, tokens, final = run(engine, _greedy(40))
        assert final.stats.drafts_by_source.get("draft model", (0, 0))[0] > 0
    finally:
        engine.close()


# -- bad input -------------------------------------------------------------------------------------------------------

def _refused(target_path, draft_path, message):
    target, draft = load(target_path), load(draft_path)
    try:
        with pytest.raises(VocabularyMismatch, match=message):
            DraftModel(draft, target)
    finally:
        target.close()
        draft.close()


def test_a_draft_model_with_another_vocabulary_is_refused_naming_the_difference(smollm2_path, gemma_path):
    _refused(gemma_path, smollm2_path, r"vocabularies differ \(262144 tokens against 49152\)")


def test_a_vocabulary_that_differs_in_one_token_is_named(smollm2_path, tmp_path):
    path = requantized(smollm2_path, tmp_path / "one-token.gguf", token=(1234, "zzzz"))
    _refused(smollm2_path, path, r"token 1234 is b'.*' in the model and b'zzzz' in")


def _worker_error(model, **options):
    worker = start_worker(model, options=LoadOptions(n_ctx=512, slots=1, **options))
    try:
        with pytest.raises(LanternError) as error:
            worker.wait_ready(timeout=120)
        return str(error.value)
    finally:
        worker.close()


@pytest.fixture
def opened_runtimes(monkeypatch):
    """Every llama.cpp runtime the wiring opens, to check that a failed load closed them all."""
    import app.wiring as wiring

    opened = []

    class Tracked(wiring.LlamaCppRuntime):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            opened.append(self)

    monkeypatch.setattr(wiring, "LlamaCppRuntime", Tracked)
    return opened


def test_a_missing_or_damaged_draft_model_says_so_and_nothing_stays_loaded(smollm2_path, tmp_path, opened_runtimes):
    opened = opened_runtimes
    assert "no-such-draft" in _worker_error(smollm2_path, draft_model="no-such-draft")
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(smollm2_path.read_bytes()[: 5 << 20])
    message = _worker_error(smollm2_path, draft_model=str(damaged))
    assert "damaged.gguf" in message
    assert all(rt._model is None for rt in opened)  # the target (if it loaded) was closed again


def test_a_draft_model_with_another_vocabulary_fails_the_load_and_unloads_the_model(smollm2_path, gemma_path,
                                                                                      opened_runtimes):
    opened = opened_runtimes
    message = _worker_error(gemma_path, draft_model=str(smollm2_path))
    assert "cannot draft for gemma-3-270m" in message and "vocabularies differ" in message
    assert len(opened) == 2 and all(rt._model is None for rt in opened)


def test_a_draft_model_larger_than_the_model_is_refused_before_loading(smollm2_path, gemma_path):
    with pytest.raises(ModelLoadError, match="is larger than"):
        plan_load(smollm2_path, options=LoadOptions(n_ctx=512, draft_model=str(gemma_path)))


def test_a_draft_model_that_does_not_fit_beside_the_model_is_refused(smollm2_path, q4_0_copy):
    info, draft = describe_model(smollm2_path), describe_model(q4_0_copy)
    alone = info.size_bytes + info.kv_bytes(512)
    both = with_draft(info, draft, n_ctx=512)
    both = both.size_bytes + both.kv_bytes(512)
    hw = Hardware(os="Linux", arch="x86_64", cpu_cores=2, ram_total_bytes=8 << 30, llamacpp_version="0.3.36",
                  ram_available_bytes=RAM_MARGIN_BYTES + (alone + both) // 2)
    plan_load(smollm2_path, options=LoadOptions(n_ctx=512), hardware=hw)  # alone it fits
    with pytest.raises(ModelLoadError, match="fits, but not with the draft model smol-q4_0.gguf"):
        plan_load(smollm2_path, options=LoadOptions(n_ctx=512, draft_model=str(q4_0_copy)), hardware=hw)


def test_a_draft_model_runs_with_one_slot(smollm2_path, q4_0_copy):
    with pytest.raises(ModelLoadError, match="one conversation at a time"):
        start_worker(smollm2_path, options=LoadOptions(n_ctx=512, slots=2, draft_model=str(q4_0_copy)))
    plan = plan_load(smollm2_path, options=LoadOptions(n_ctx=512, draft_model=str(q4_0_copy)))
    assert plan.draft_path == q4_0_copy and "drafts with smol-q4_0.gguf" in plan.reason
    from app.wiring import auto_slots

    assert auto_slots(plan) == 1


def test_a_worker_loads_the_pair_and_its_figures_count_the_draft_models_drafts(smollm2_path, q4_0_copy):
    from conftest import reply_tokens

    worker = start_worker(smollm2_path, options=LoadOptions(n_ctx=1024, slots=0, draft_model=str(q4_0_copy),
                                                            n_gpu_layers=-1 if GPU_MODE else None),
                          engine_options=FORCED)
    try:
        engine = worker.wait_ready(timeout=120)
        assert engine.draft_model is not None and engine.draft_model.name == "smol-q4_0.gguf"
        tokens, final = reply_tokens(worker.submit(_greedy(24)))
        assert final.stats.drafts_by_source["draft model"][0] > 0
    finally:
        worker.close()


def test_the_library_vocabulary_digest_matches_copies_and_bears_damaged_files(smollm2_path, gemma_path, q4_0_copy,
                                                                               tmp_path):
    from models.drafts import vocabulary_of

    assert vocabulary_of(smollm2_path) == vocabulary_of(q4_0_copy) is not None  # requantized: the same vocabulary
    assert vocabulary_of(gemma_path) not in (None, vocabulary_of(smollm2_path))
    one_token = requantized(smollm2_path, tmp_path / "one-token.gguf", token=(1234, "zzzz"))
    assert vocabulary_of(one_token) != vocabulary_of(smollm2_path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2_path.read_bytes()[:200_000])  # ends inside the vocabulary
    assert vocabulary_of(cut) is None
    assert vocabulary_of(tmp_path / "missing.gguf") is None
    (tmp_path / "text.gguf").write_text("not a model")
    assert vocabulary_of(tmp_path / "text.gguf") is None


def test_on_mlx_the_same_engine_path_drafts_with_an_mlx_draft_model(smollm2_mlx_path):
    """On MLX the draft model is an MLX runtime in the same engine path (mlx-lm's own speculative generator
    drafts outside Lantern's engine: no KV reuse across turns, no policy)."""
    from conftest import load_mlx

    target, draft = load_mlx(smollm2_mlx_path), load_mlx(smollm2_mlx_path)
    engine = Engine(target, options=FORCED, draft_model=DraftModel(draft, target))
    try:
        text, tokens, final = run(engine, _greedy(32))
        drafted, accepted = final.stats.drafts_by_source["draft model"]
        assert drafted > 0 and accepted / drafted > 0.8  # itself: nearly every draft is kept
        reference, gaps = reference_greedy(load_mlx(smollm2_mlx_path), engine.cached_tokens[:final.stats.prompt_tokens],
                                           32)
        assert_same_up_to_near_tie(reference, gaps, tokens, target.special.end_of_turn)
    finally:
        engine.close()


# -- a draft model with recurrent layers (Qwen3.5's DeltaNet): its state is put back after each draft -----------------

@pytest.fixture(scope="module")
def hybrid_path(smollm2_path, tmp_path_factory):
    from tiny_models import write_qwen35

    return write_qwen35(smollm2_path, tmp_path_factory.mktemp("hybrid") / "qwen35.gguf")


def test_a_recurrent_draft_model_takes_back_its_draft_exactly(hybrid_path, smollm2_path):
    target, rt, fresh = load(smollm2_path), load(hybrid_path, n_ctx=512), load(hybrid_path, n_ctx=512)
    try:
        dm = DraftModel(rt, target)
        assert dm.recurrent and not rt.can_truncate
        context = rt.tokenize("The lighthouse keeper climbed the stairs every evening and", add_bos=True)
        draft = dm.propose(context, 6)[0]
        assert len(draft) == 6 and dm.cached_tokens == context and rt.n_past == len(context)
        assert dm.propose(context, 6)[0] == draft  # read five tokens a pass at a time, and put back: the same
        # the target keeps two of them and says what follows: the draft model computes just those, from its mark
        kept = [*context, draft[0], draft[1], 42]
        after = dm.propose(kept, 3)[0]
        assert dm.cached_tokens == kept
        # the same conversation read from nothing, in one pass: the same draft
        assert DraftModel(fresh, target).propose(kept, 3)[0] == after
    finally:
        for r in (target, rt, fresh):
            r.close()


def test_greedy_text_with_a_recurrent_draft_model_is_plain_greedy_text(hybrid_path, smollm2_path, tmp_path):
    from tiny_models import write_qwen35

    near = write_qwen35(smollm2_path, tmp_path / "near.gguf", jitter=0.05)  # agrees often, not always
    target = load(hybrid_path, n_ctx=512)
    engine = Engine(target, options=FORCED, draft_model=DraftModel(load(near, n_ctx=512), target))
    try:
        request = GenerationRequest(prompt="Once upon a time, in a lighthouse by the sea,", max_tokens=40,
                                    ignore_eos=True, sampling=SamplingParams(temperature=0))
        text, tokens, final = run(engine, request)
        prompt = engine.cached_tokens[:final.stats.prompt_tokens]
        drafted, accepted = final.stats.drafts_by_source["draft model"]
        assert 0 < accepted < drafted, (accepted, drafted)  # kept and rejected drafts both
    finally:
        engine.close()
    assert_plain_greedy(hybrid_path, prompt, tokens, n_ctx=512)


def test_a_recurrent_draft_model_is_offered_and_loads_beside_the_model(hybrid_path, smollm2_path, tmp_path,
                                                                       monkeypatch):
    from models.drafts import draft_candidates
    from models.library import ModelLibrary

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    library = ModelLibrary()
    library.import_path(hybrid_path, link=True, name="qwen35-tiny")
    starter = library.get("smollm2-135m-instruct")
    assert "qwen35-tiny" in [m.name for m in draft_candidates(starter, library.list())]
    worker = start_worker(smollm2_path, options=LoadOptions(n_ctx=512, draft_model="qwen35-tiny", slots=1),
                          engine_options=FORCED)
    try:
        worker.wait_ready(timeout=120)
        assert worker.call(lambda e: (e.draft_model.name, e.draft_model.recurrent)).result(60) == \
            ("qwen35.gguf", True)
        final = list(worker.submit(_greedy(16)))[-1]
        assert final.stats.drafts_by_source["draft model"][0] > 0
    finally:
        worker.close()
