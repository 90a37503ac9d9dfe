"""The window's document search: its index beside the chats, where the vectors come from, and the excerpts a message
is given. Qt-free: the window calls these from its pool threads.

Vectors come from an embedding model in the library when there is one (a GGUF of all-MiniLM-L6-v2, nomic-embed-text
or kin, in a llama.cpp context of its own beside the chat model), else from the loaded chat model's own hidden states
(llama.cpp only; weaker for search, so the chip says which is used).
"""
from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from app.document_search import DocumentIndex, DocumentSearchError, Excerpt, choose_excerpts
from app.embedding_service import EmbeddingService
from basics.errors import ContextOverflowError, LanternError
from engine.events import GenerationRequest
from models.facts import facts_of
from runtimes.llamacpp import EMBED_CTX

WAIT_S = 600  # an embedding job waits behind the chat model's replies at most this long
MIN_EXCERPTS_TOKENS = 128  # less room than this for excerpts is said, not sent as nothing


def embed_whole(tokenize: Callable[[str], list[int]], embed: Callable[[list[list[int]]], np.ndarray], limit: int,
                texts: Sequence[str]) -> np.ndarray:
    """One vector per text; a text longer than the model reads at once is read in windows of `limit` tokens whose
    vectors are averaged by length: never cut."""
    windows, owner, weight = [], [], []
    for i, text in enumerate(texts):
        tokens = tokenize(text) or tokenize(" ")
        for start in range(0, len(tokens), limit):
            windows.append(tokens[start:start + limit])
            owner.append(i)
            weight.append(len(windows[-1]))
    vectors = np.asarray(embed(windows), dtype=np.float32)
    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    np.add.at(out, owner, vectors * np.asarray(weight, dtype=np.float32)[:, None])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


def _version(path: Path) -> str:
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "?"


class ModelEmbeddings:
    """An embedding model, run by the embedding service's own thread."""

    def __init__(self, service, name: str, path: Path):
        self.service, self.name = service, name
        self.key = f"embedding:{name}:{_version(path)}"
        self.label = name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        def run(embedder):
            # the embedder's own special tokens ([CLS] … [SEP]) go around every window
            return embed_whole(lambda t: embedder.tokenize(t)[1:-1] or embedder.tokenize(t), embedder.embed,
                               embedder.n_ctx - 2, texts) if embedder.n_ctx > 8 else \
                embed_whole(embedder.tokenize, embedder.embed, embedder.n_ctx, texts)
        return _result(self.service.run(self.name, run))


class ChatModelEmbeddings:
    """The loaded chat model's mean-pooled hidden states, on its engine's thread (in a context of their own)."""

    def __init__(self, worker, name: str, path: Path):
        self.worker, self.name = worker, name
        self.key = f"chat:{name}:{_version(path)}"
        self.label = f"{name} (the chat model)"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        def run(engine):
            rt = engine.runtime
            if not hasattr(rt, "embed"):
                raise DocumentSearchError("Searching a file larger than the context needs an embedding model (import "
                                          "a GGUF of all-MiniLM-L6-v2 or nomic-embed-text) or a llama.cpp chat "
                                          "model.")
            return embed_whole(lambda t: rt.tokenize(t, add_bos=False, parse_special=False), rt.embed,
                               min(EMBED_CTX, rt.n_ctx), texts)
        return _result(self.worker.call(run))


def _result(future: Future):
    try:
        return future.result(timeout=WAIT_S)
    except (DocumentSearchError, LanternError):
        raise
    except TimeoutError:
        raise DocumentSearchError("The model was busy for too long; try again.") from None


def embedding_models(library) -> dict[str, Path]:
    """The embedding models in `library` (models.library.ModelLibrary), by name (their files' headers are read
    once per version)."""
    found = {}
    for model in library.list():
        try:
            if model.format == "gguf" and facts_of(model.path).get("kind") == "embedding":
                found[model.name] = Path(model.path)
        except (OSError, ValueError, LanternError):
            continue  # a damaged or missing file is no embedding model
    return found


class ChatDocuments:
    """The index (opened when first needed) and the embedding service, for the window's lifetime."""

    def __init__(self, index_path: Path, embedding_models: Callable[[], dict[str, Path]],
                 model_path: Callable[[str], Path | None] = lambda _name: None):
        self.index_path = Path(index_path)
        self.embedding_models = embedding_models
        self.model_path = model_path
        self._index: DocumentIndex | None = None
        self._service = None

    @property
    def index(self) -> DocumentIndex:
        if self._index is None:
            self._index = DocumentIndex(self.index_path)
        return self._index

    def embeddings(self, worker, chat_model: str | None):
        """Where this window's vectors come from now; DocumentSearchError when nothing can make them."""
        models = self.embedding_models()
        if models:
            name = sorted(models)[0]
            if self._service is None:
                self._service = EmbeddingService(self.embedding_models)
            return ModelEmbeddings(self._service, name, models[name])
        if worker is None or chat_model is None:
            raise DocumentSearchError("Load a model first: searching a file larger than the context needs a model "
                                      "to embed it (an embedding model, or a llama.cpp chat model).")
        return ChatModelEmbeddings(worker, chat_model, self.model_path(chat_model) or Path(chat_model))

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
        if self._index is not None:
            self._index.close()
            self._index = None


def excerpts_for(index: DocumentIndex, embeddings, worker, files: list[tuple[int, str, int]], question: str,
                 request: GenerationRequest) -> list[tuple[str, int, list[Excerpt]]]:
    """(name, parts, excerpts) for each searched file (file id, name, parts): the parts that best answer `question`,
    as many as fit in half the context beside `request` (the chat, its inline files and the question) and room for
    the reply. DocumentSearchError when the chat leaves no room for them."""
    found = index.search([f for f, _n, _p in files], question, embeddings)

    def count(engine):
        try:
            used = engine.count_prompt_tokens(request)
        except ContextOverflowError as e:
            used = e.prompt_tokens
        n_ctx = engine.runtime.n_ctx
        lengths = [len(engine.runtime.tokenize(e.text, add_bos=False, parse_special=False)) for e in found]
        return used, n_ctx, lengths

    used, n_ctx, lengths = _result(worker.call(count))
    reply_room = min(request.max_tokens or n_ctx // 4, n_ctx // 4)
    budget = min(n_ctx // 2, n_ctx - used - reply_room)
    names = ", ".join(n for _f, n, _p in files)
    if budget < MIN_EXCERPTS_TOKENS:
        raise DocumentSearchError(f"This chat leaves no room for excerpts of {names} ({used:,} of {n_ctx:,} tokens "
                                  "used); start a new chat (⋯ New chat from a summary keeps the gist), or take the "
                                  "file off.")
    chosen = choose_excerpts(found, lengths, budget)
    if not chosen:
        raise DocumentSearchError(f"No part of {names} fits in the room this chat leaves ({budget:,} tokens).")
    return [(name, parts, [e for e in chosen if e.file_id == file_id]) for file_id, name, parts in files]
