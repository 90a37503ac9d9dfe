"""`POST /v1/embeddings`: vectors from an embedding model, loaded beside the chat model in its own context.

`input` is a string, a list of strings, a token array or a list of token arrays; `encoding_format` float or base64
(little-endian float32, as OpenAI's); `dimensions` only where the model gives that many (a shorter vector would be
another model's answer); usage counts the tokens read.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Literal

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import Field

from app.embedding_service import EmbeddingService
from app.server.admission import admit
from app.server.errors import APIError
from app.server.request_parts import RequestModel, UnsupportedField
from basics.errors import InvalidRequestError

MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingsRequest(RequestModel):
    model: str = ""  # left out: the only embedding model there is
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None  # an end-user id: it changes nothing

    def inputs(self) -> list[str | list[int]]:
        items = self.input
        if isinstance(items, str):
            items = [items]
        elif items and all(isinstance(t, int) for t in items):
            items = [list(items)]  # one token array
        if not items:
            raise UnsupportedField("input", "input is empty")
        if len(items) > MAX_INPUTS:
            raise UnsupportedField("input", f"at most {MAX_INPUTS} inputs per request")
        for i, item in enumerate(items):
            if not item:  # OpenAI refuses them too: an empty text has no meaning to embed
                raise UnsupportedField("input", f"input[{i}] is empty")
        return list(items)


def add_embedding_routes(app: FastAPI, service: EmbeddingService, auth, chat, wait_s: float) -> None:
    """`chat`: the ModelService; naming one of its models asks for that model's pooled hidden states."""
    @app.post("/v1/embeddings", dependencies=[Depends(auth)])
    async def embeddings(body: EmbeddingsRequest) -> JSONResponse:
        known = service.known()
        # left out: the one embedding model, else the loaded chat model's own pooled states (as llama-server does)
        name = body.model or (next(iter(known)) if len(known) == 1 else "") or (chat.model if not known else "")
        inputs = body.inputs()
        if name in known:
            vectors, read = await asyncio.wrap_future(service.embed(name, inputs))
        elif name and name in chat.known_models():  # asked for explicitly: a chat model's own hidden states
            vectors, read = await (await admit(chat, name, lambda engine: _pooled(engine, inputs), wait_s=wait_s,
                                               how=chat.call))
        else:
            what = f"{name!r} is not a model here" if name else "no model was named"
            raise APIError(404 if name else 400, f"{what}; the embedding models here: "
                           f"{', '.join(sorted(known)) or 'none (import one, such as a GGUF of all-MiniLM-L6-v2)'} "
                           "(a chat model's name gives its own pooled hidden states).", param="model",
                           code="model_not_found" if name else None)
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise UnsupportedField("dimensions", f"{name} gives {vectors.shape[1]} dimensions and cannot shorten "
                                                 "them")
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64"
                 else v.tolist()} for i, v in enumerate(vectors)]
        # straight to JSON: FastAPI's encoder would walk every float of every vector (~25 ms for 32 of MiniLM's)
        return JSONResponse({"object": "list", "data": data, "model": name,
                             "usage": {"prompt_tokens": read, "total_tokens": read}})


def _pooled(engine, inputs: list[str | list[int]]):
    """On the engine's thread: a chat model's hidden states, mean-pooled (llama.cpp only)."""
    rt = engine.runtime
    if not hasattr(rt, "embed"):
        raise InvalidRequestError("Pooled embeddings from a chat model run on llama.cpp only: use an embedding "
                                  "model.", param="model")
    tokens = [rt.tokenize(i, add_bos=rt.special.add_bos, parse_special=False) if isinstance(i, str) else i
              for i in inputs]
    return rt.embed(tokens), sum(len(t) for t in tokens)
