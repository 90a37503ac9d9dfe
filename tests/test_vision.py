"""Images through a vision projector (llama.cpp's mtmd): the starter model with a tiny random-weight projector.

What the model "sees" is noise (the projector's weights are random); what is tested is exact: loading, an image's
positions in the KV cache, their reuse on the next turn and never for another image, bad images and projectors,
finding a projector beside its model, the library and the Hub bringing it along, and the endpoint.
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import httpx
import openai
import pytest
from vision_model import png_bytes, write_projector

from basics.errors import InvalidRequestError, ModelLoadError
from engine.drafting import PromptLookupDrafter
from engine.engine import Engine
from engine.events import Finished, GenerationRequest, TextDelta
from engine.sampling import SamplingParams, make_sampler
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.runtime import LoadOptions
from runtimes.vision import check_projector_file

GREEDY = SamplingParams(temperature=0)


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def asking(image: bytes, text: str = "What is in this picture?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": data_url(image)}}]}]


@pytest.fixture(scope="module")
def projector(tmp_path_factory):
    return write_projector(tmp_path_factory.mktemp("vision") / "mmproj-tiny-f16.gguf", n_embd_text=576)


@pytest.fixture(scope="module")
def seeing(smollm2_path, projector):
    rt = LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=2048, projector=str(projector)))
    engine = Engine(rt)
    yield engine
    engine.close()


def run(engine: Engine, messages, max_tokens: int = 8) -> tuple[str, Finished]:
    text, done = "", None
    for ev in engine.generate(GenerationRequest(messages=messages, max_tokens=max_tokens, sampling=GREEDY)):
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, Finished):
            done = ev
    assert done is not None and done.error is None, done
    return text, done


def test_an_image_takes_its_positions_and_the_next_turn_computes_only_new_text(seeing):
    engine = seeing
    engine.forget_cache()
    text_only = engine.count_prompt_tokens(GenerationRequest(messages=[
        {"role": "user", "content": "What is in this picture?"}]))
    first = asking(png_bytes())
    reply, done = run(engine, first)
    assert done.stats.prompt_tokens == text_only + 4  # a 16x16 image in 8x8 patches: four positions
    assert done.stats.cached_tokens == 0 and reply
    second = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And its colours?"}]
    _, again = run(engine, second)
    # the image and the reply stay cached: only the new turn is computed (the reply's last token may be fed again)
    assert again.stats.cached_tokens >= done.stats.prompt_tokens + done.stats.completion_tokens - 1
    assert again.stats.prefill_tokens < again.stats.prompt_tokens - done.stats.prompt_tokens


def test_another_image_in_the_same_place_is_computed_and_the_same_image_gives_the_same_reply(seeing):
    engine = seeing
    engine.forget_cache()
    a, done_a = run(engine, asking(png_bytes(seed=1)))
    image_at = min(i for i, t in enumerate(engine.cached_tokens) if t < 0)
    b, done_b = run(engine, asking(png_bytes(seed=2)))
    assert done_b.stats.cached_tokens == image_at  # the text before the image, not a position of it
    a_again, done = run(engine, asking(png_bytes(seed=1)))
    assert a_again == a
    assert done.stats.prompt_tokens == done_a.stats.prompt_tokens


def test_bad_images_are_clear_errors_and_the_model_keeps_working(seeing):
    engine = seeing
    cases = [
        (asking(b"\x89PNG\r\n\x1a\n not really"), "could not be read"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
         "does not fetch images"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}],
         "not valid base64"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}],
         "must be base64"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
            {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]}], "only user messages"),
    ]
    for messages, said in cases:
        with pytest.raises(InvalidRequestError, match=said):
            run(engine, messages)
    reply, _ = run(engine, asking(png_bytes(seed=3)))
    assert reply


def test_a_model_without_a_projector_says_it_cannot_see(engine):
    with pytest.raises(InvalidRequestError, match="cannot see images.*without a vision projector"):
        run(engine, asking(png_bytes()))


def test_a_marker_typed_as_text_stays_text(seeing):
    from runtimes.vision import marker_for

    typed = [{"role": "user", "content": "Look: " + marker_for(png_bytes())}]
    request = GenerationRequest(messages=typed)
    tokens = seeing.count_prompt_tokens(request)
    assert tokens > 8  # the marker's characters became tokens, not an image's four positions


def test_drafts_and_penalties_never_take_an_images_positions():
    drafter = PromptLookupDrafter(ngram_max=2)
    drafter.extend([5, 6, -1, -2, 7, 5, 6])
    assert drafter.propose(4) == ([], 2)  # what followed "5 6" was an image: nothing to draft
    drafter.extend([-1])
    sample = make_sampler(SamplingParams(temperature=0, repeat_penalty=1.5))
    import numpy as np

    logits = np.zeros(10, dtype=np.float32)
    logits[9] = 1.0  # a negative id would wrap around onto the last token
    assert sample(logits, [-1, -2, 3]) == 9


def test_bad_projectors_are_refused_before_llama_cpp_reads_them(smollm2_path, tmp_path, projector):
    wrong_size = write_projector(tmp_path / "mmproj-64.gguf", n_embd_text=64)
    with pytest.raises(ModelLoadError, match="mismatch between text model"):
        LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512, projector=str(wrong_size)))
    with pytest.raises(ModelLoadError, match="not a vision projector"):
        check_projector_file(smollm2_path)
    cut = tmp_path / "mmproj-cut.gguf"
    cut.write_bytes(projector.read_bytes()[:-4096])
    with pytest.raises(ModelLoadError, match="runs past the end"):
        check_projector_file(cut)
    with pytest.raises(ModelLoadError, match="is not there"):
        check_projector_file(tmp_path / "missing.gguf")


def test_a_projector_that_crashes_llama_cpp_is_caught_in_the_test_process(smollm2_path, tmp_path):
    # no position embeddings: llama.cpp reads a null tensor while encoding (a crash, not an error)
    import gguf

    good = write_projector(tmp_path / "full.gguf", n_embd_text=576, seed=4)
    reader = gguf.GGUFReader(str(good))
    broken = tmp_path / "mmproj-broken.gguf"
    w = gguf.GGUFWriter(str(broken), arch="clip")
    for field in reader.fields.values():
        if field.name.startswith(("clip.", "general.name")):
            value = field.contents()
            kind = field.types[0]
            if kind == gguf.GGUFValueType.ARRAY:
                w.add_array(field.name, value)
            else:
                w.add_key_value(field.name, value, kind)
    for t in reader.tensors:
        if t.name != "v.position_embd.weight":
            w.add_tensor(t.name, t.data.copy().reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelLoadError) as e:
        LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512, projector=str(broken)))
    assert "vision projector mmproj-broken.gguf made llama.cpp crash" in str(e.value)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, smollm2_path, projector):
    folder = tmp_path_factory.mktemp("seeing-model")
    os.symlink(smollm2_path, folder / "smollm2.gguf")
    shutil.copy(projector, folder / projector.name)
    write_projector(folder / "mmproj-other-model.gguf", n_embd_text=64)  # made for another model: passed over
    return folder


def test_a_projector_beside_the_model_is_found_and_named_in_the_plan(model_folder):
    from app.wiring import plan_load

    plan = plan_load(str(model_folder / "smollm2.gguf"), options=LoadOptions(n_ctx=1024))
    assert plan.options.projector == str(model_folder / "mmproj-tiny-f16.gguf")
    assert "sees images through mmproj-tiny-f16.gguf" in plan.reason
    none = plan_load(str(model_folder / "smollm2.gguf"), options=LoadOptions(n_ctx=1024, projector=""))
    assert none.options.projector == ""
    with pytest.raises(ModelLoadError, match="is a vision projector, not a model"):
        plan_load(str(model_folder / "mmproj-tiny-f16.gguf"))


def test_the_library_imports_a_model_with_its_projector_and_refuses_a_projector_alone(tmp_path, smollm2_path,
                                                                                      projector):
    from models.library import LibraryError, ModelLibrary

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(smollm2_path, src / "smol.gguf")
    shutil.copy(projector, src / "mmproj-smol-f16.gguf")
    library = ModelLibrary(tmp_path / "data")
    models = library.import_path(src)
    assert [m.name for m in models] == ["smol"]  # the projector is not a model of its own
    folder = library.model_folder("smol")
    assert (folder / "mmproj-smol-f16.gguf").read_bytes() == projector.read_bytes()
    with pytest.raises(LibraryError, match="is a vision projector"):
        library.import_path(src / "mmproj-smol-f16.gguf")


def test_a_pull_from_the_hub_brings_the_projector_beside_the_model(tmp_path, smollm2_path, projector):
    from hub_server import HubFile, HubRepo, HubServer, HubState
    from models.hub import HubClient
    from models.library import ModelLibrary
    from models.projectors import find_projector

    state = HubState()
    state.add(HubRepo("tiny/vision-GGUF", {"smol-Q4_1.gguf": HubFile(smollm2_path),
                                           "mmproj-smol-f16.gguf": HubFile(projector),
                                           "mmproj-smol-q8_0.gguf": HubFile(projector)}))
    with HubServer(state) as hub:
        client = HubClient(endpoint=hub.endpoint, library=ModelLibrary(tmp_path / "data"))
        listing = client.listing("tiny/vision-GGUF")
        assert [c.label for c in listing.choices] == ["Q4_1"]  # projectors are no choice of model
        model = client.pull("tiny/vision-GGUF")
    path = Path(model.path)
    assert find_projector(path).name == "mmproj-smol-f16.gguf"
    assert not (path.parent / "mmproj-smol-q8_0.gguf").exists()


@pytest.fixture(scope="module")
def seeing_server(model_folder):
    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService, default_opener
    from models.library import ModelLibrary

    library = ModelLibrary()
    name = "smollm2-seeing"  # a linked model whose folder holds its projector
    library.add(model_folder / "smollm2.gguf", name=name, source="import", linked=True)
    service = ModelService(name, models=lambda: [name], open_worker=default_opener(options=LoadOptions(n_ctx=2048)))
    server = LanternServer(service, ServerSettings(port=0)).start()
    yield server, name
    server.stop()
    library.remove(name)


def test_the_endpoint_takes_image_url_parts_from_the_openai_client(seeing_server):
    server, name = seeing_server
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=name, max_tokens=6, temperature=0, messages=asking(png_bytes()))
    assert r.choices[0].message.content and r.usage.prompt_tokens > 4
    again = client.chat.completions.create(model=name, max_tokens=6, temperature=0, messages=asking(png_bytes()))
    assert again.choices[0].message.content == r.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1  # the image too
    bad = httpx.post(server.base_url + "/chat/completions", json={
        "model": name, "max_tokens": 2, "messages": asking(b"GIF89a broken")})
    assert bad.status_code == 400 and "could not be read" in bad.json()["error"]["message"]


def test_the_responses_and_messages_apis_take_images_too(seeing_server):
    import anthropic

    server, name = seeing_server
    image = base64.b64encode(png_bytes()).decode()
    chat = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    reference = chat.chat.completions.create(model=name, max_tokens=6, temperature=0, messages=asking(png_bytes()))
    r = chat.responses.create(model=name, max_output_tokens=6, temperature=0, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is in this picture?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{image}"}]}])
    # the same prompt as the chat request's (text, then the image); replies may part at near ties (conftest.py)
    assert r.output_text and r.usage.input_tokens == reference.usage.prompt_tokens
    claude = anthropic.Anthropic(base_url=root_of(server), api_key="x", max_retries=0)
    m = claude.messages.create(model=name, max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
        {"type": "text", "text": "What is in this picture?"}]}])
    # images come first in a Messages turn: the same positions, before the text
    used = m.usage.input_tokens + m.usage.cache_read_input_tokens  # Anthropic counts cache reads apart
    assert m.content[0].text and used == reference.usage.prompt_tokens
    with pytest.raises(anthropic.BadRequestError, match="does not fetch images"):
        claude.messages.create(model=name, max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}])
    with pytest.raises(openai.BadRequestError, match="data: URL"):
        chat.responses.create(model=name, max_output_tokens=2, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://x/y.png"}]}])


def root_of(server) -> str:
    return server.base_url.removesuffix("/v1")


def test_the_command_line_takes_a_projector_or_none(model_folder):
    from test_cli import lantern

    model = str(model_folder / "smollm2.gguf")
    missing = lantern("generate", "--model", model, "--projector", str(model_folder / "gone.gguf"), "--max-tokens",
                      "2", "--n-ctx", "512", "Hello")
    assert missing.returncode != 0 and "gone.gguf is not there" in missing.stderr
    for projector in ("none", str(model_folder / "mmproj-tiny-f16.gguf")):
        r = lantern("generate", "--model", model, "--projector", projector, "--max-tokens", "4", "--n-ctx", "512",
                    "The capital of France is")
        assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_images_run_on_slots_beside_another_conversation(smollm2_path, projector):
    from engine.engine import EngineOptions
    from engine.slots import SlotWorker
    from conftest import assert_same_up_to_near_tie, reference_greedy

    seeing = GenerationRequest(messages=asking(png_bytes(seed=5)), max_tokens=12, sampling=GREEDY)
    solo = Engine(LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=2048, projector=str(projector))),
                  options=EngineOptions(prompt_lookup=False))
    solo_prompt = solo._prompt_tokens(seeing)[0]
    reference, gaps = reference_greedy(solo.runtime, solo_prompt, 12)
    solo.close()
    w = SlotWorker(LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=2048, slots=2, projector=str(projector))),
                   options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        talker = iter(w.submit(GenerationRequest(messages=[{"role": "user", "content": "Tell me about the sea."}],
                                                 max_tokens=60, ignore_eos=True, sampling=GREEDY)))
        next(talker)  # decoding in one slot while the image is read in the other
        tokens, done = [], None
        for event in w.submit(seeing):
            if isinstance(event, TextDelta):
                tokens.extend(event.tokens)
            else:
                done = event
        assert done.error is None and done.stats.prompt_tokens == len(solo_prompt)
        assert_same_up_to_near_tie(reference, gaps, tokens, ends=w.runtime.special.end_of_turn)
        rest = list(talker)
        assert rest[-1].reason == "length"
    finally:
        w.close()

