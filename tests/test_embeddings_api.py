"""`/v1/embeddings` on a real embedding model (all-MiniLM-L6-v2 from PyPI, as a GGUF) and the official openai client:
vectors equal to sentence-transformers' reference, both encodings, token arrays, batches, and 400s that name the
field (never a silent cut)."""
from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from embedding_model import minilm_gguf, reference_embedding, reference_tokens
from test_server import start

TEXTS = ["The new movie is awesome", "The new movie is so great", "The cat sits outside",
         "I love pasta, and my friend prefers pizza."]


@pytest.fixture(scope="module")
def server():
    path = minilm_gguf()
    s = start(embedding_models=lambda: {"minilm": path})
    yield s
    s.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)


def test_vectors_match_the_sentence_transformers_reference(client):
    r = client.embeddings.create(model="minilm", input=TEXTS)  # the SDK asks for base64 and decodes it
    assert [d.index for d in r.data] == list(range(len(TEXTS))) and r.model == "minilm"
    for text, d in zip(TEXTS, r.data):
        ours = np.array(d.embedding)
        assert len(ours) == 384 and abs(np.linalg.norm(ours) - 1) < 1e-5
        assert ours @ reference_embedding(text) > 0.9999, text  # F16 weights against the float32 reference
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(len(reference_tokens(t)) for t in TEXTS)
    a, b, c = (np.array(d.embedding) for d in r.data[:3])
    assert round(float(a @ b), 3) == 0.894 and a @ c < 0.2  # sentence-transformers' documented similarities


def test_float_and_base64_token_arrays_and_a_left_out_model_agree(server, client):
    root = server.base_url
    floats = httpx.post(root + "/embeddings", json={"model": "minilm", "input": TEXTS[0],
                                                    "encoding_format": "float"}, timeout=120).json()
    packed = httpx.post(root + "/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"},
                        timeout=120).json()  # no model named: the only embedding model
    vector = np.array(floats["data"][0]["embedding"], dtype=np.float32)
    assert np.array_equal(np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4"), vector)
    ids = reference_tokens(TEXTS[0])
    one = client.embeddings.create(model="minilm", input=ids, encoding_format="float")
    many = client.embeddings.create(model="minilm", input=[ids, reference_tokens(TEXTS[2])], encoding_format="float")
    assert np.allclose(one.data[0].embedding, vector, atol=1e-6) and len(many.data) == 2
    assert np.array(many.data[0].embedding) @ vector > 0.99999  # batched with another: float sums in another order
    assert client.embeddings.create(model="minilm", input="x", dimensions=384).data[0].embedding


def test_a_batch_of_256_runs_together_and_equals_one_at_a_time(client):
    texts = [f"Sentence number {i} about {'cats' if i % 2 else 'the stock market'}." for i in range(256)]
    together = client.embeddings.create(model="minilm", input=texts, encoding_format="float").data
    for i in (0, 1, 127, 255):
        alone = client.embeddings.create(model="minilm", input=texts[i], encoding_format="float").data[0]
        assert np.array(alone.embedding) @ np.array(together[i].embedding) > 0.99999


@pytest.mark.parametrize("body, param, words", [
    ({"input": "word " * 600}, "input", "at most 512"),
    ({"input": ""}, "input", "empty"),
    ({"input": []}, "input", "empty"),
    ({"input": [[101, 10 ** 7, 102]]}, None, "vocabulary"),
    ({"input": "x", "dimensions": 128}, "dimensions", "384"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", ""),
    ({"input": "x", "frobnicate": 1}, "frobnicate", ""),
])
def test_bad_inputs_are_400s_that_say_why(server, body, param, words):
    r = httpx.post(server.base_url + "/embeddings", json={"model": "minilm", **body}, timeout=120)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert words in err["message"] and (param is None or err["param"] == param), err


def test_an_unknown_model_is_a_404_and_the_chat_model_still_answers(server, client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nobody", input="x")
    r = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content is not None  # the chat model and the embedding model side by side


def test_an_imported_embedding_model_is_found_listed_and_refused_for_replies():
    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService, default_opener
    from runtimes.runtime import LoadOptions
    from models.library import ModelLibrary

    library = ModelLibrary()  # the tests' own data folder (conftest)
    if "minilm-imported" not in library.names():
        library.import_path(minilm_gguf(), link=True, name="minilm-imported")
    chat = "smollm2-135m-instruct"
    service = ModelService(chat, models=library.names, open_worker=default_opener(options=LoadOptions(n_ctx=1024)))
    server = LanternServer(service, ServerSettings(port=0)).start()  # embedding models found by what their files say
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=5, timeout=120)
        listed = {m.id: m.model_extra for m in client.models.list().data}
        assert listed["minilm-imported"]["kind"] == "embedding" and listed[chat]["kind"] == "chat"
        vector = client.embeddings.create(model="minilm-imported", input=TEXTS[0]).data[0].embedding
        assert np.array(vector) @ reference_embedding(TEXTS[0]) > 0.9999
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="minilm-imported", messages=[{"role": "user", "content": "Hi"}])
        assert "embedding model" in e.value.body["message"] and service.model == chat  # the chat model stays
    finally:
        server.stop()


def test_a_chat_model_named_explicitly_gives_its_pooled_hidden_states(server, client, smollm2_path):
    import llama_cpp

    chat = "smollm2-135m-instruct"
    ask = [{"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model=chat, messages=ask, max_tokens=4, temperature=0)
    r = client.embeddings.create(model=chat, input=TEXTS[:2], encoding_format="float")
    ours = np.array([d.embedding for d in r.data])
    assert ours.shape == (2, 576) and np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    # the same pooling by llama-cpp-python's own embedding mode on the same file
    peer = llama_cpp.Llama(str(smollm2_path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                           n_ctx=512, verbose=False)
    try:
        for text, vector in zip(TEXTS, ours):
            assert np.array(peer.embed(text, normalize=True)) @ vector > 0.999, text
    finally:
        peer.close()
    again = client.chat.completions.create(model=chat, messages=ask, max_tokens=4, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1  # the chat's cache kept
    assert again.choices[0].message.content == first.choices[0].message.content
