"""Files too large for the context, searched: parts that cover the whole text, vectors from the real all-MiniLM-L6-v2
(and the real starter model's pooled hidden states) in SQLite with sqlite-vec, the part that answers a question found
first, excerpts that fit the room the chat leaves, and a damaged or hostile input that loses nothing."""
from __future__ import annotations

import random

import numpy as np
import pytest
from embedding_model import minilm_gguf

from app.document_search import DocumentIndex, DocumentSearchError, split_parts

NEEDLE = "The spare key to the harbour gate is kept by the night watchman, Orlando Pike."
WORDS = ("river mountain engine kernel budget garden window paper market signal winter copper orbit canvas "
         "tunnel meadow").split()


def book(pages: int = 40, needle_page: int = 29) -> str:
    """A PDF's text as Lantern reads it: "[page N]" lines, filler, and one sentence that answers the question."""
    rng = random.Random(7)
    out = []
    for page in range(1, pages + 1):
        lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(12)]
        if page == needle_page:
            lines.insert(5, NEEDLE)
        out.append(f"[page {page}]\n" + "\n".join(lines))
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def minilm():
    from app.chat_documents import ModelEmbeddings
    from app.embedding_service import EmbeddingService

    service = EmbeddingService(lambda: {"minilm": minilm_gguf()})
    yield ModelEmbeddings(service, "minilm", minilm_gguf())
    service.close()


class Counting:
    """Embeddings that count how many texts they were asked for (and can fail after some)."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.key, self.label = inner, inner.key, inner.label
        self.texts, self.fail_after = 0, fail_after

    def embed(self, texts):
        if self.fail_after is not None and self.texts + len(texts) > self.fail_after:
            raise OSError("the embedding model went away")
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_parts_cover_every_line_say_their_page_and_overlap():
    text = book()
    parts = split_parts(text, kind="pdf")
    body = "\n".join(p.text for p in parts)
    for line in text.split("\n"):
        if line.strip() and not line.startswith("[page "):
            assert line in body  # nothing is left out
    assert "[page" not in body  # the marks say where a part is, they are not its text
    assert parts[0].where == "page 1" and parts[-1].where.endswith("40")
    assert all(len(p.text) <= 1400 for p in parts)
    for a, b in zip(parts, parts[1:]):
        assert a.text.split("\n")[-1] in b.text  # a sentence cut at a part's end is whole in the next

    code = "\n".join(f"line {i}: " + "x" * 50 for i in range(1, 201))
    parts = split_parts(code)
    assert parts[0].where == "lines 1–21" and parts[-1].where.endswith("–200")
    one_long_line = "word " * 2000  # no newline at all: cut at spaces, nothing lost
    parts = split_parts(one_long_line)
    assert len(parts) > 5 and "".join(p.text for p in parts).count("word") >= 2000


def test_the_part_that_answers_is_found_first_and_a_second_index_is_instant(tmp_path, minilm):
    index = DocumentIndex(tmp_path / "documents.sqlite3")
    counting = Counting(minilm)
    seen = []
    file_id = index.add("handbook.pdf", book(), counting, kind="pdf", progress=lambda d, t: seen.append((d, t)))
    parts = index.parts(file_id)
    assert parts > 10 and counting.texts == parts and seen[-1] == (parts, parts)
    assert index.add("handbook.pdf", book(), counting, kind="pdf") == file_id and counting.texts == parts  # cached
    found = index.search([file_id], "Who keeps the spare key to the harbour gate?", minilm)
    assert NEEDLE in found[0].text and found[0].where.endswith("29") and found[0].file == "handbook.pdf"
    # in other words, none of them in the file: the vectors find it
    found = index.search([file_id], "Which person holds the extra entry token for the port's barrier?", minilm)
    assert any(NEEDLE in f.text for f in found[:3])
    index.close()
    index = DocumentIndex(tmp_path / "documents.sqlite3")  # kept on disk: the next start finds it
    assert index.parts(file_id) == parts
    index.close()


def test_a_chat_keeps_its_files_and_hostile_questions_are_only_words(tmp_path, minilm):
    index = DocumentIndex(tmp_path / "documents.sqlite3")
    file_id = index.add("handbook.pdf", book(), minilm, kind="pdf")
    index.keep_for_chat(7, file_id, "handbook.pdf")
    assert index.chat_files(7) == [(file_id, "handbook.pdf")] and index.chat_files(8) == []
    for question in ('"', 'NEAR(a b) OR * AND -x', "key\" OR body:*", "'; DROP TABLE parts; --", "\x00", ""):
        index.search([file_id], question or " ", minilm)  # FTS5 syntax in a question is searched as words
    index.forget_for_chat(7, file_id)
    assert index.chat_files(7) == [] and index.parts(file_id) > 0  # the index keeps it for the next time
    index.close()


def test_an_embedding_failure_part_way_leaves_no_half_indexed_file(tmp_path, minilm):
    index = DocumentIndex(tmp_path / "documents.sqlite3")
    failing = Counting(minilm, fail_after=20)
    with pytest.raises(OSError, match="went away"):
        index.add("handbook.pdf", book(), failing, kind="pdf", batch=16)
    counting = Counting(minilm)
    file_id = index.add("handbook.pdf", book(), counting, kind="pdf")
    assert counting.texts == index.parts(file_id)  # indexed whole, from the start: nothing half was kept
    index.close()


def test_a_damaged_index_is_set_aside_and_built_again(tmp_path, minilm):
    path = tmp_path / "documents.sqlite3"
    path.write_bytes(b"this is not a database, it was damaged" * 100)
    index = DocumentIndex(path)
    file_id = index.add("handbook.pdf", book(pages=4, needle_page=2), minilm, kind="pdf")
    assert index.parts(file_id) > 0
    index.close()
    kept = list(tmp_path.glob("documents.sqlite3.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")  # set aside, not lost


def test_a_text_longer_than_the_embedder_reads_is_read_whole_in_windows():
    from app.chat_documents import embed_whole

    calls = []

    def embed(windows):
        calls.append([len(w) for w in windows])
        return np.array([[len(w), 1.0] for w in windows], dtype=np.float32)

    vectors = embed_whole(lambda text: list(range(len(text.split()))), embed, 100, ["a " * 250, "b c"])
    assert calls == [[100, 100, 50, 2]]
    expected = np.array([100 * 100 + 100 * 100 + 50 * 50, 250.0])
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected))  # weighted by length, normalized
    assert np.isclose(np.linalg.norm(vectors[1]), 1.0)


def test_excerpts_fit_the_room_the_chat_leaves_on_the_starter_model(tmp_path, worker, smollm2_path):
    from app.chat_documents import ChatModelEmbeddings, excerpts_for
    from engine.events import GenerationRequest

    chat = ChatModelEmbeddings(worker, "smollm2-135m-instruct", smollm2_path)  # its own pooled hidden states
    index = DocumentIndex(tmp_path / "documents.sqlite3")
    file_id = index.add("handbook.pdf", book(pages=12, needle_page=9), chat, kind="pdf")
    vector = chat.embed(["one", "two words"])
    assert vector.shape[0] == 2 and np.allclose(np.linalg.norm(vector, axis=1), 1.0)
    question = "Who keeps the spare key to the harbour gate?"
    request = GenerationRequest(messages=[{"role": "user", "content": question}], max_tokens=64)
    [(name, parts, excerpts)] = excerpts_for(index, chat, worker, [(file_id, "handbook.pdf", index.parts(file_id))],
                                             question, request)
    assert name == "handbook.pdf" and parts == index.parts(file_id)
    assert any(NEEDLE in e.text for e in excerpts)  # the words index finds it, whatever the weak vectors say
    assert [e.part for e in excerpts] == sorted(e.part for e in excerpts)  # in the file's order

    from app.attachments import message_with_files

    message = message_with_files(question, [], [(name, parts, excerpts)])
    full = GenerationRequest(messages=[{"role": "user", "content": message}], max_tokens=64)
    tokens = worker.call(lambda e: e.count_prompt_tokens(full)).result(60)
    assert tokens <= 1024 // 2 + 64  # half the context for excerpts, beside the question

    long_chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": "lighthouse " * 90} for i in range(9)]
    crowded = GenerationRequest(messages=long_chat + [{"role": "user", "content": question}], max_tokens=64)
    with pytest.raises(DocumentSearchError, match="leaves no room for excerpts of handbook.pdf"):
        excerpts_for(index, chat, worker, [(file_id, "handbook.pdf", parts)], question, crowded)
    index.close()
