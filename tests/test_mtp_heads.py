"""A model's MTP heads through llama.cpp's own MTP context (runtimes/llama_mtp.py), on tiny random-weight models
with MTP blocks as the real ones ship them: Qwen3.5 (hybrid: DeltaNet and attention; a dense block), GLM-4.5
(attention; a mixture-of-experts block), MiMo-V2 (two chained blocks) and Gemma 4 (its heads a separate "assistant"
GGUF that reads the model's own cache). Random weights draft noise, so these check the bookkeeping exactly:
the heads' cache follows the model's batches, cuts and switches, and a draft depends only on the conversation, never
on how the model's cache got there."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_plain_greedy, load, run
from tiny_models import write_gemma4, write_gemma4_assistant, write_glm4_moe, write_mimo2, write_qwen35

from basics.errors import ModelLoadError
from machine.hardware import Hardware
from runtimes.llama_mtp import MtpUnavailable, mtp_layers, staging_functions

CPU = Hardware(os="Linux", arch="x86_64", cpu_cores=2, ram_total_bytes=16 << 30, ram_available_bytes=12 << 30,
               llamacpp_version="0.3.36")
PROMPT = ("The lighthouse keeper climbed the stairs every evening, lit the lamp, wrote the weather in his book, and "
          "watched the ships pass the rocks until morning came, and")


@pytest.fixture(scope="module")
def mtp_model(smollm2_path, tmp_path_factory):
    return write_qwen35(smollm2_path, tmp_path_factory.mktemp("mtp") / "qwen35-mtp.gguf", mtp=True)


@pytest.fixture(scope="module")
def gemma4_model(smollm2_path, tmp_path_factory):
    """A Gemma 4 with its assistant in an MTP/ folder beside it, as llama.cpp users keep them."""
    folder = tmp_path_factory.mktemp("gemma4")
    (folder / "MTP").mkdir()
    write_gemma4_assistant(smollm2_path, folder / "MTP" / "gemma-4-assistant.gguf")
    return write_gemma4(smollm2_path, folder / "gemma-4.gguf")


@pytest.fixture(scope="module", params=["qwen35", "glm4moe", "mimo2", "gemma4"])
def any_mtp_model(request, smollm2_path, mtp_model, tmp_path_factory):
    """Qwen3.5 (hybrid; a dense MTP block), GLM-4.5 (attention; a mixture-of-experts MTP block), MiMo-V2 (two
    MTP blocks, chained: one a drafted token) and Gemma 4 (two blocks in its assistant, run together)."""
    if request.param == "qwen35":
        return mtp_model
    if request.param == "gemma4":
        return request.getfixturevalue("gemma4_model")
    write = write_glm4_moe if request.param == "glm4moe" else write_mimo2
    return write(smollm2_path, tmp_path_factory.mktemp("mtp") / f"{request.param}-mtp.gguf")


def with_heads(path) -> dict:
    """The load options that bring a model's heads: its own, or the assistant beside it."""
    from models.assistants import find_assistant

    assistant = find_assistant(path)
    return {"mtp_assistant": str(assistant)} if assistant else {"load_mtp": True}


@pytest.fixture
def model(any_mtp_model):
    rt = load(any_mtp_model, n_ctx=512, n_batch=16, **with_heads(any_mtp_model))  # n_batch 16: batches
    yield rt
    rt.close()


def _prompt(rt) -> list[int]:
    return rt.tokenize(PROMPT, add_bos=True)


def _next(rt, tokens: list[int]) -> int:
    """The model reads `tokens` from an empty cache; its greedy next token."""
    rt.reset()
    return int(np.argmax(rt.forward(tokens, 0)[0]))


def test_the_metadata_says_which_models_have_heads(mtp_model, smollm2_path):
    from files.gguf_header import read_gguf_header

    assert mtp_layers(read_gguf_header(mtp_model).metadata) == 1
    assert mtp_layers(read_gguf_header(smollm2_path).metadata) == 0
    assert mtp_layers({"general.architecture": "x", "x.nextn_predict_layers": "2"}) == 0  # a damaged value


def test_a_draft_depends_on_the_conversation_not_on_how_the_cache_got_there(model):
    heads = model.start_mtp()
    assert (heads.n_layers, heads.chained, heads.shared) in ((1, False, False), (2, True, False), (2, False, True))
    longest = heads.n_layers if heads.chained else 4  # chained heads draft one token each
    tokens = _prompt(model)
    assert len(tokens) > 16  # several batches of the model, each followed
    first = _next(model, tokens)
    assert heads.length == len(tokens)
    reference = heads.last_hidden
    assert np.any(reference)  # the model's own h, not the zeros of an unknown one
    draft = heads.draft([*tokens, first], 4)[0]
    assert len(draft) == longest and all(0 <= t < model.n_vocab for t in draft)
    assert heads.length == len(tokens)  # the drafted positions were taken out again
    assert heads.draft([*tokens, first], 4)[0] == draft  # the same again: nothing of the first draft stayed

    # the same conversation read in two parts (a turn, then the next): the same starting point
    model.reset()
    model.forward(tokens[:9], 0)
    logits = model.forward(tokens[9:], 9)[0]
    assert int(np.argmax(logits)) == first
    assert np.allclose(heads.last_hidden, reference, atol=1e-3)

    # the model verifies a draft and keeps one token (a rejection): the heads are cut back with it, and start
    # from the h of the kept token, as if the model had read only that far
    verify = model.forward([first, *draft], len(tokens), rows=[0])[0]
    second = int(np.argmax(verify))
    assert heads.length == len(tokens) + 1 + longest
    assert model.truncate(len(tokens) + 1)
    after_cut = heads.draft([*tokens, first, second], 4)[0]
    assert heads.length == len(tokens) + 1
    cut_hidden = heads.last_hidden
    assert _next(model, [*tokens, first]) == second
    assert np.allclose(heads.last_hidden, cut_hidden, atol=1e-3) and np.any(cut_hidden)
    # An assistant reads the model's cache itself, and llama.cpp lets its attention see the cells a cut left
    # behind (measured: the same draft after a fresh computation of the same tokens, not after a cut), so its
    # drafts after a cut are only less often right; they are still verified like any draft
    assert heads.shared or heads.draft([*tokens, first, second], 4)[0] == after_cut

    # another conversation, then back: the heads follow each
    other = model.tokenize("A recipe for bread: flour, water, salt and", add_bos=True)
    other_next = _next(model, other)
    assert heads.length == len(other) and not np.allclose(heads.last_hidden, reference, atol=1e-3)
    assert len(heads.draft([*other, other_next], 3)[0]) == min(3, longest)
    assert _next(model, tokens) == first
    assert np.allclose(heads.last_hidden, reference, atol=1e-3)
    assert heads.draft([*tokens, first], 4)[0] == draft  # (an assistant's: computed afresh, as at first)


def test_a_conversation_restored_from_a_saved_state_still_drafts(model):
    heads = model.start_mtp()
    tokens = _prompt(model)
    first = _next(model, tokens)
    saved = model.save_state()
    model.reset()
    model.forward(model.tokenize("Something else entirely.", add_bos=True), 0)
    model.restore_state(saved, len(tokens))  # the model's cache back; the heads never saw its hidden states
    draft = heads.draft([*tokens, first], 3)[0]
    assert len(draft) == min(3, heads.n_layers if heads.chained else 3) and heads.length == len(tokens)
    assert not np.any(heads.last_hidden)  # the h of a restored position is not known: zeros
    more = model.forward([first], len(tokens))[0]  # and the conversation goes on, followed from here
    assert heads.length == len(tokens) + 1
    assert heads.draft([*tokens, first, int(np.argmax(more))], 3)[0]


def test_heads_are_refused_clearly_where_there_are_none(smollm2_path, mtp_model):
    plain = load(smollm2_path, n_ctx=512, load_mtp=True)
    try:
        with pytest.raises(MtpUnavailable, match="has no MTP heads"):
            plain.start_mtp()
    finally:
        plain.close()
    not_loaded = load(mtp_model, n_ctx=512)  # the heads' tensors skipped: the model runs without them
    try:
        assert isinstance(MtpUnavailable("x"), ModelLoadError)
        with pytest.raises(MtpUnavailable, match="loaded without its MTP heads"):
            not_loaded.start_mtp()
        assert len(not_loaded.forward(_prompt(not_loaded), 0)) == 1
    finally:
        not_loaded.close()


def test_a_library_without_the_staging_functions_is_named():
    import llama_cpp.llama_cpp as C

    bare = types.SimpleNamespace(**{name: getattr(C, name) for name in dir(C) if not name.startswith("_")})
    bare._lib = types.SimpleNamespace()  # a libllama that exports none of them
    del bare.llama_process
    with pytest.raises(MtpUnavailable) as e:
        staging_functions(bare)
    message = str(e.value)
    assert "llama_process" in message
    assert "llama_set_embeddings_nextn (exported as _Z26llama_set_embeddings_nextnP13llama_contextbb)" in message
    assert "llama_get_embeddings_nextn_ith" in message
    assert staging_functions(C).keys() == {"set_embeddings_nextn", "get_embeddings_nextn",
                                           "get_embeddings_nextn_ith", "set_nextn_layer_offset"}  # all here


def test_greedy_text_with_mtp_drafts_is_plain_greedy_text(any_mtp_model):
    from engine.engine import Engine, EngineOptions
    from engine.events import GenerationRequest
    from engine.mtp_drafter import MtpDrafter
    from engine.sampling import SamplingParams

    rt = load(any_mtp_model, n_ctx=512, **with_heads(any_mtp_model))
    engine = Engine(rt, options=EngineOptions(prompt_lookup=False, adaptive_draft=False, draft_max=6),
                    draft_model=MtpDrafter(rt))
    try:
        if not rt.can_truncate:  # a rejected draft rolls the DeltaNet state back: drafts stay within the snapshots
            assert engine.options.draft_max <= rt.rollback_tokens - 2
        request = GenerationRequest(prompt=PROMPT, max_tokens=40, ignore_eos=True,
                                    sampling=SamplingParams(temperature=0))
        text, tokens, final = run(engine, request)
        prompt = engine.cached_tokens[:final.stats.prompt_tokens]
        drafted, accepted = final.stats.drafts_by_source["mtp"]
        assert drafted > 10 and final.stats.drafted_tokens == drafted  # random heads: most drafts are rejected
        seeded = GenerationRequest(prompt=PROMPT, max_tokens=24, ignore_eos=True,
                                   sampling=SamplingParams(temperature=0.9, seed=3))
        assert run(engine, seeded)[1] == run(engine, seeded)[1]  # seeded replies repeat, drafts or not
    finally:
        engine.close()
    assert_plain_greedy(any_mtp_model, prompt, tokens, n_ctx=512)


def test_mtp_is_planned_where_the_model_has_heads_and_refused_clearly_elsewhere(mtp_model, smollm2_path, tmp_path):
    from dataclasses import replace

    from app.wiring import auto_slots, plan_load
    from runtimes.runtime import LoadOptions

    cpu = CPU
    on = plan_load(mtp_model, options=LoadOptions(n_ctx=512, mtp="on"), hardware=cpu)
    assert on.options.load_mtp and "drafts with its MTP heads (1 block)" in on.reason
    assert auto_slots(on, cpu) == 1  # the heads' cache follows one conversation
    auto = plan_load(mtp_model, options=LoadOptions(n_ctx=512), hardware=cpu)
    assert not auto.options.load_mtp and "not used on the CPU" in auto.reason  # where drafting rarely pays
    off = plan_load(mtp_model, options=LoadOptions(n_ctx=512, mtp="off"), hardware=cpu)
    assert not off.options.load_mtp and "MTP" not in off.reason
    plain = plan_load(smollm2_path, options=LoadOptions(n_ctx=512), hardware=cpu)
    assert not plain.options.load_mtp and "MTP" not in plain.reason
    for options, message in ((LoadOptions(n_ctx=512, mtp="on"), "has no MTP heads"),
                             (LoadOptions(n_ctx=512, mtp="sometimes"), "MTP must be one of auto, on, off")):
        with pytest.raises(ModelLoadError, match=message):
            plan_load(smollm2_path, options=options, hardware=cpu)
    with pytest.raises(ModelLoadError, match="one conversation at a time"):
        plan_load(mtp_model, options=LoadOptions(n_ctx=512, mtp="on", slots=2), hardware=cpu)
    small = write_glm4_moe(smollm2_path, tmp_path / "small.gguf", n_embd=32)  # its vocabulary, a smaller model
    both = plan_load(mtp_model, options=replace(LoadOptions(n_ctx=512, mtp="on"), draft_model=str(small)),
                     hardware=cpu)
    assert both.options.load_mtp and both.draft_path == small and auto_slots(both, cpu) == 1
    assert "drafts with small.gguf" in both.reason and "drafts with its MTP heads" in both.reason


@pytest.mark.parametrize("kind", ["own heads", "assistant"])
def test_a_worker_with_mtp_on_drafts_with_the_heads(kind, mtp_model, gemma4_model):
    from app.wiring import start_worker
    from engine.events import GenerationRequest
    from engine.sampling import SamplingParams
    from runtimes.runtime import LoadOptions

    model = mtp_model if kind == "own heads" else gemma4_model  # Qwen3.5's own; Gemma 4's assistant beside it
    worker = start_worker(model, options=LoadOptions(n_ctx=512, mtp="on", slots=0))
    try:
        worker.wait_ready(timeout=120)
        source, shared = worker.call(lambda e: (e.draft_model.source, e.runtime.mtp.shared)).result(60)
        assert (source, shared) == ("mtp", kind == "assistant")
        events = list(worker.submit(GenerationRequest(prompt=PROMPT, max_tokens=12, ignore_eos=True,
                                                      sampling=SamplingParams(temperature=0))))
        assert events[-1].stats.completion_tokens == 12
    finally:
        worker.close()


def test_gemma4_drafts_with_the_assistant_beside_it_and_a_wrong_one_is_refused_clearly(gemma4_model, smollm2_path,
                                                                                        tmp_path):
    from dataclasses import replace

    from app.wiring import auto_slots, plan_load
    from runtimes.runtime import LoadOptions

    cpu = CPU
    assistant = gemma4_model.parent / "MTP" / "gemma-4-assistant.gguf"
    on = plan_load(gemma4_model, options=LoadOptions(n_ctx=512, mtp="on"), hardware=cpu)
    assert on.options.mtp_assistant == str(assistant) and not on.options.load_mtp
    assert "drafts with its MTP heads (gemma-4-assistant.gguf)" in on.reason and auto_slots(on, cpu) == 1
    auto = plan_load(gemma4_model, options=LoadOptions(n_ctx=512), hardware=cpu)
    assert not auto.options.mtp_assistant and "are not used on the CPU" in auto.reason
    off = plan_load(gemma4_model, options=LoadOptions(n_ctx=512, mtp="off"), hardware=cpu)
    assert not off.options.mtp_assistant and "MTP" not in off.reason
    # chosen by name as the draft model: it drafts as the heads do, on the CPU too (the user asked for it)
    named = plan_load(gemma4_model, options=LoadOptions(n_ctx=512, draft_model=str(assistant)), hardware=cpu)
    assert named.options.mtp_assistant == str(assistant) and named.draft_path is None
    assert "drafts with its MTP heads (gemma-4-assistant.gguf)" in named.reason

    wide = write_gemma4_assistant(smollm2_path, tmp_path / "other-assistant.gguf", n_target_embd=96)
    for model, draft, message in (
            (assistant, None, "is a Gemma 4 assistant: it drafts for its Gemma 4 model and cannot chat by itself"),
            (smollm2_path, assistant, "drafts for Gemma 4 models, and SmolLM2"),
            (gemma4_model, wide, "hidden size 96, and gemma-4.gguf's is 64")):
        with pytest.raises(ModelLoadError, match=message):
            plan_load(model, options=LoadOptions(n_ctx=512, draft_model=str(draft) if draft else None),
                      hardware=cpu)
    with pytest.raises(ModelLoadError, match="drafts on llama.cpp only"):
        plan_load(gemma4_model, backend="mlx", options=LoadOptions(n_ctx=512, draft_model=str(assistant)),
                  hardware=replace(cpu, mlx_version="0.30"))


def test_a_damaged_assistant_is_refused_in_words_and_the_model_loads_without_it(gemma4_model, tmp_path):
    import shutil

    from app.wiring import start_worker
    from runtimes.runtime import LoadOptions

    good = (gemma4_model.parent / "MTP" / "gemma-4-assistant.gguf").read_bytes()
    cut = tmp_path / "cut-assistant.gguf"
    cut.write_bytes(good[: len(good) // 2])  # a download that stopped halfway
    model = tmp_path / "gemma-4.gguf"
    shutil.copy(gemma4_model, model)
    worker = start_worker(model, options=LoadOptions(n_ctx=512, draft_model=str(cut), slots=1))
    try:
        with pytest.raises(ModelLoadError, match="cut-assistant.gguf"):
            worker.wait_ready(timeout=120)
    finally:
        worker.close()
    plain = load(model, n_ctx=512)  # nothing of the refused pair stayed: the model alone loads and computes
    try:
        assert len(plain.forward(_prompt(plain), 0)) == 1
    finally:
        plain.close()


def test_the_library_keeps_an_assistant_with_its_model_and_offers_it_only_as_its_draft(gemma4_model, smollm2_path,
                                                                                        tmp_path, monkeypatch):
    import shutil

    from app.wiring import plan_load
    from models.drafts import draft_candidates
    from models.facts import facts_of
    from models.library import ModelLibrary
    from runtimes.runtime import LoadOptions

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    library = ModelLibrary()
    download = tmp_path / "download"  # a folder as a user keeps them: the model, its assistant beside it
    download.mkdir()
    shutil.copy(gemma4_model, download / "gemma-4.gguf")
    shutil.copy(gemma4_model.parent / "MTP" / "gemma-4-assistant.gguf", download / "gemma-4-assistant.gguf")
    (download / "MTP").mkdir()
    (download / "MTP" / "damaged.gguf").write_bytes(b"GGUF" + bytes(40))  # looked through, and passed over
    (model,) = library.import_path(download)  # one model: the assistant comes with it, into its MTP/ folder
    assert model.name == "gemma-4" and facts_of(model.path)["kind"] == "chat"
    kept = Path(model.path).parent / "MTP" / "gemma-4-assistant.gguf"
    assert kept.is_file()
    cpu = CPU
    assert plan_load("gemma-4", options=LoadOptions(n_ctx=512, mtp="on"), hardware=cpu).options.mtp_assistant == \
        str(kept)

    # imported alone, it is a drafter: offered under Draft with for its Gemma 4, never for another model
    (alone,) = library.import_path(download / "gemma-4-assistant.gguf")
    assert facts_of(alone.path)["kind"] == "drafter"
    everything = library.list()
    assert [m.name for m in draft_candidates(model, everything)] == [alone.name]
    smol = library.get("smollm2-135m-instruct")
    assert alone.name not in [m.name for m in draft_candidates(smol, everything)]
    with pytest.raises(ModelLoadError, match="cannot chat by itself"):
        plan_load(alone.name, options=LoadOptions(n_ctx=512), hardware=cpu)


def test_the_policy_picks_between_the_heads_and_a_draft_model_each_step(smollm2_path, tmp_path):
    """Both sources beside each other: a draft model that agrees with the model (the model itself, loaded twice)
    and random heads that rarely do. The policy learns which pays, drafts with it, and looks at the other now and
    then; greedy text stays plain greedy text."""
    from engine.draft_model import DraftModel
    from engine.engine import Engine, EngineOptions
    from engine.events import GenerationRequest
    from engine.mtp_drafter import MtpDrafter
    from engine.sampling import SamplingParams

    path = write_glm4_moe(smollm2_path, tmp_path / "glm4moe-mtp.gguf")
    rt, twin = load(path, n_ctx=512, load_mtp=True), load(path, n_ctx=512)
    heads, draft = MtpDrafter(rt), DraftModel(twin, rt, target_name=path.name)
    rt.on_gpu = True  # the nominal GPU curve, where drafting pays (tests/test_seeded_drafts.py does the same)
    heads.relative_cost = draft.relative_cost = 0.05  # as a small draft model and heads cost on a GPU
    engine = Engine(rt, options=EngineOptions(prompt_lookup=False), draft_model=[heads, draft])
    try:
        assert engine.drafters == (heads, draft)
        request = GenerationRequest(prompt=PROMPT, max_tokens=60, ignore_eos=True,
                                    sampling=SamplingParams(temperature=0))
        text, tokens, final = run(engine, request)
        prompt = engine.cached_tokens[:final.stats.prompt_tokens]
        by_source = final.stats.drafts_by_source
        assert by_source["draft model"][0] > by_source["mtp"][0] > 0  # both tried; the one that agrees drafts most
        assert by_source["draft model"][1] > by_source["mtp"][1]
    finally:
        engine.close()
    assert_plain_greedy(path, prompt, tokens, n_ctx=512)
