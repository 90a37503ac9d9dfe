"""Samplers are plain callables built by `make_sampler` (after mlx-lm's sample_utils)."""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from basics.errors import InvalidRequestError

# (logits of one row, every token in the context so far) -> next token id
Sampler = Callable[[np.ndarray, Sequence[int]], int]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. `temperature == 0` is greedy decoding (the other fields then do nothing)."""

    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    # (token id, bias) pairs added to the logits before anything else, as OpenAI's logit_bias: -100 bans a token,
    # +100 all but forces it (greedy requests too)
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self) -> None:
        checks = [
            ("temperature", math.isfinite(self.temperature) and 0 <= self.temperature <= 100, "between 0 and 100"),
            ("top_k", self.top_k >= 0, "0 (off) or more"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("min_p", 0 <= self.min_p < 1, "in [0, 1)"),
            ("repeat_penalty", math.isfinite(self.repeat_penalty) and self.repeat_penalty > 0, "above 0"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "between -2 and 2"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "between -2 and 2"),
            ("penalty_last_n", self.penalty_last_n >= 0, "0 or more"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidRequestError(f"{name} must be {expected}, got {getattr(self, name)!r}.")
        for token, bias in self.logit_bias:
            if not (isinstance(token, int) and token >= 0 and isinstance(bias, (int, float)) and math.isfinite(bias)
                    and -100 <= bias <= 100):
                raise InvalidRequestError(f"logit_bias takes token ids to biases between -100 and 100, got "
                                          f"{token!r}: {bias!r}.", param="logit_bias")


def make_sampler(params: SamplingParams) -> Sampler:
    """Build the sampler for `params`.

    Order: penalties (over the last `penalty_last_n` context tokens, as llama.cpp does),
    then temperature, top_k, top_p, min_p, and a draw for the token's position (len(context)) from a
    generator keyed by `seed` and that position.
    """
    params.validate()
    penalize = _with_bias(_make_penalties(params), params.logit_bias)
    if params.greedy:
        if penalize is None:
            return lambda logits, context: int(np.argmax(logits))
        return lambda logits, context: int(np.argmax(penalize(logits, context)))

    # One draw per position, from a generator keyed by the seed and the position: how many draws drafting
    # consumed before (verified rows, rejected drafts) never shifts the numbers a later token is drawn with.
    key = (params.seed if params.seed is not None else secrets.randbits(64)) % (1 << 64)

    def sample(logits: np.ndarray, context: Sequence[int]) -> int:
        x = penalize(logits, context) if penalize is not None else logits
        ids, probs = _filtered_probs(x, params)
        u = np.random.default_rng([key, len(context)]).random()
        return int(ids[min(int(np.searchsorted(np.cumsum(probs), u * probs.sum())), len(ids) - 1)])

    def draft(logits: np.ndarray, context: Sequence[int]) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
        """A draft model's token for this position, drawn from its own distribution q (same settings), and q."""
        x = penalize(logits, context) if penalize is not None else logits
        ids, probs = _filtered_probs(x, params)
        probs = probs / probs.sum()
        u = np.random.default_rng([key, len(context), 1]).random()
        return int(ids[min(int(np.searchsorted(np.cumsum(probs), u)), len(ids) - 1)]), (ids, probs)

    def judge(logits: np.ndarray, context: Sequence[int], token: int, q: tuple[np.ndarray, np.ndarray]) -> int:
        """Speculative sampling: keep the drafted `token` with probability min(1, p/q), else draw from the residual
        max(0, p - q), normalised. The token that comes out follows the target's p exactly, and is `token` more often
        than a fresh draw from p would be."""
        x = penalize(logits, context) if penalize is not None else logits
        ids, probs = _filtered_probs(x, params)
        probs = probs / probs.sum()
        q_ids, q_probs = q
        q_dense = np.zeros(x.shape[0])
        q_dense[q_ids] = q_probs
        rng = np.random.default_rng([key, len(context), 2])
        p_token = float(probs[ids == token].sum())
        if rng.random() * q_dense[token] < p_token:
            return int(token)
        residual = np.maximum(probs - q_dense[ids], 0.0)
        if residual.sum() <= 0:  # p == q on p's support: the draft was kept above (p_token = q_token > 0)
            residual = probs
        u = rng.random() * residual.sum()
        return int(ids[min(int(np.searchsorted(np.cumsum(residual), u)), len(ids) - 1)])

    sample.draft, sample.judge = draft, judge  # a wrapped sampler (a grammar, logprobs) has neither: drafts greedy
    return sample


def _filtered_probs(logits: np.ndarray, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids and their (unnormalised) probabilities after top_k, top_p and min_p."""
    x = logits.astype(np.float64)  # the order first; the temperature only scales the gaps below
    if 0 < params.top_k < x.shape[0]:
        ids = np.argpartition(x, -params.top_k)[-params.top_k :]
    else:
        ids = np.arange(x.shape[0])
    vals = x[ids]
    order = np.argsort(-vals, kind="stable")
    ids, vals = ids[order], vals[order]
    # gaps before dividing: a temperature near zero (5e-324) gives exp(-inf) = 0, never inf - inf = NaN
    with np.errstate(over="ignore"):
        probs = np.exp((vals - vals[0]) / params.temperature)
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p)) + 1
        ids, probs = ids[:keep], probs[:keep]
    if params.min_p > 0.0:
        keep = probs >= params.min_p * probs[0]
        ids, probs = ids[keep], probs[keep]
    return ids, probs


def _with_bias(penalize, logit_bias) -> Callable[[np.ndarray, Sequence[int]], np.ndarray] | None:
    """The penalties after logit_bias's additions (or the bias alone)."""
    if not logit_bias:
        return penalize
    ids = np.array([t for t, _ in logit_bias], dtype=np.int64)
    biases = np.array([b for _, b in logit_bias], dtype=np.float32)

    def biased(logits: np.ndarray, context: Sequence[int]) -> np.ndarray:
        x = logits.astype(np.float32, copy=True)
        x[ids] += biases
        return penalize(x, context) if penalize is not None else x

    return biased


def _make_penalties(params: SamplingParams) -> Callable[[np.ndarray, Sequence[int]], np.ndarray] | None:
    if (
        params.penalty_last_n == 0
        or (params.repeat_penalty == 1.0 and params.presence_penalty == 0.0 and params.frequency_penalty == 0.0)
    ):
        return None

    def penalize(logits: np.ndarray, context: Sequence[int]) -> np.ndarray:
        recent = context[-params.penalty_last_n :]
        if not recent:
            return logits
        ids, counts = np.unique(np.asarray(recent, dtype=np.int64), return_counts=True)
        if ids[0] < 0:  # images' positions (negative ids, runtimes/vision.py) are no tokens to penalise
            keep = ids >= 0
            ids, counts = ids[keep], counts[keep]
        x = logits.astype(np.float32, copy=True)
        vals = x[ids].astype(np.float64)
        if params.repeat_penalty != 1.0:
            with np.errstate(over="ignore"):  # clipped below
                vals = np.where(vals > 0, vals / params.repeat_penalty, vals * params.repeat_penalty)
        vals = vals - counts * params.frequency_penalty - params.presence_penalty
        x[ids] = np.clip(vals, -3e38, 3e38)  # a penalty near 0 (5e-324) would make inf, then NaN probabilities
        return x

    return penalize


@dataclass(frozen=True)
class TokenLogprob:
    """A produced token's log-probability, and the `top` likeliest tokens of the distribution it was drawn from."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()
    piece: bytes = b""  # the token's bytes, and those of each of `top` (filled by the engine, which has the vocabulary)
    top_pieces: tuple[bytes, ...] = ()


def make_logprobs(params: SamplingParams, top_n: int) -> Callable[[np.ndarray, Sequence[int], int], TokenLogprob]:
    """`(logits, context, token) -> TokenLogprob`, from the distribution `make_sampler(params)` draws from: after
    logit_bias and the penalties, then the temperature, top_k, top_p and min_p (candidates outside them have none).
    A greedy request's is the softmax after logit_bias and the penalties (at temperature 1), as OpenAI's and
    llama.cpp's servers give for temperature 0."""
    penalize = _with_bias(_make_penalties(params), params.logit_bias)

    def logprobs(logits: np.ndarray, context: Sequence[int], token: int) -> TokenLogprob:
        x = (penalize(logits, context) if penalize is not None else logits).astype(np.float64)
        if params.greedy:
            finite = np.isfinite(x)
            m = x[finite].max()
            lp = x - (m + np.log(np.exp(x[finite] - m).sum()))
            ids = np.argsort(-lp, kind="stable")[:top_n] if top_n else np.array([], dtype=np.int64)
            return TokenLogprob(int(token), float(lp[token]), tuple((int(i), float(lp[i])) for i in ids
                                                                     if np.isfinite(lp[i])))
        ids, probs = _filtered_probs(x, params)
        probs = probs / probs.sum()
        where = np.nonzero(ids == token)[0]
        chosen = float(np.log(probs[where[0]])) if len(where) else float("-inf")
        top = tuple((int(i), float(np.log(p))) for i, p in zip(ids[:top_n], probs[:top_n]) if p > 0)
        return TokenLogprob(int(token), chosen, top)

    return logprobs


class LogprobRecorder:
    """Records each produced token's log-probabilities as the sampler draws it, in the order the tokens come out
    (every draw of the sampler is a produced token: plain steps, and a verification's accepted drafts and the token
    after them), so a reply gets the same figures with prompt lookup as without.

    `inner` wraps the plain sampler (it sees the logits after a grammar's mask); `outer` the whole chain (a grammar
    that ends the reply gives its end token without a draw: certain, logprob 0)."""

    def __init__(self, params: SamplingParams, top_n: int):
        self._logprobs = make_logprobs(params, top_n)
        self.produced: list[TokenLogprob] = []
        self._drawn: TokenLogprob | None = None

    def inner(self, sampler: Sampler) -> Sampler:
        def recorded(logits: np.ndarray, context: Sequence[int]) -> int:
            token = sampler(logits, context)
            self._drawn = self._logprobs(logits, context, token)
            return token

        return recorded

    def outer(self, sampler: Sampler) -> Sampler:
        def recorded(logits: np.ndarray, context: Sequence[int]) -> int:
            self._drawn = None
            token = sampler(logits, context)
            drawn = self._drawn
            self.produced.append(drawn if drawn is not None and drawn.token == token else TokenLogprob(token, 0.0))
            return token

        return recorded
