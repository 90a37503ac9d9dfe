"""OpenAI's choices: the log-probabilities of a reply's tokens in the chat and the completions shapes, and the
requests behind `n` choices (one per choice; their prompt is computed once and shared through the slots' cache)."""
from __future__ import annotations

from dataclasses import replace

from engine.events import GenerationRequest
from engine.sampling import TokenLogprob


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")  # a token may be part of a character: its bytes say which


def chat_logprobs(items: list[TokenLogprob]) -> dict:
    """Chat's `logprobs`: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    return {"content": [{"token": _text(lp.piece), "logprob": lp.logprob, "bytes": list(lp.piece),
                         "top_logprobs": [{"token": _text(piece), "logprob": value, "bytes": list(piece)}
                                          for (_id, value), piece in zip(lp.top, lp.top_pieces)]}
                        for lp in items], "refusal": None}


def completion_logprobs(items: list[TokenLogprob], offset: int = 0) -> dict:
    """The completions' `logprobs`: tokens, token_logprobs, top_logprobs ({token: logprob}), text_offset (from
    `offset`, the text's length before these tokens)."""
    offsets = []
    for lp in items:
        offsets.append(offset)
        offset += len(_text(lp.piece))
    return {"tokens": [_text(lp.piece) for lp in items], "token_logprobs": [lp.logprob for lp in items],
            "top_logprobs": [{_text(piece): value for (_id, value), piece in zip(lp.top, lp.top_pieces)}
                             for lp in items], "text_offset": offsets}


def choice_requests(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """The request of each of `n` choices: a seeded one draws choice i with seed + i, so the choices differ and each
    comes out the same every time (greedy choices are all the same reply, as OpenAI's are)."""
    seed = request.sampling.seed
    return [request if i == 0 or seed is None else
            replace(request, sampling=replace(request.sampling, seed=(seed + i) % (2 ** 32))) for i in range(n)]
