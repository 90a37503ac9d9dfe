"""Constrained decoding with llguidance: token masks from a grammar, for llama.cpp and MLX alike.

The mask is built from the runtime's own token bytes, so one code path serves every backend. A lazy constraint
(tool_choice "auto") watches the free text and engages at the format's trigger (`<tool_call>`), so prose stays
unconstrained and only the call is held to its grammar.
"""
from __future__ import annotations

import re
import time
from typing import Sequence

import numpy as np

from basics.errors import InvalidRequestError
from chat_format.tool_formats import lit
from engine.sampling import Sampler

_CONTROL_PREFIX = b"\xff"  # llguidance's mark for a token that plain text never becomes


class GrammarTokenizer:
    """A runtime's vocabulary as llguidance sees it (built once per model: ~0.2 s for 50k tokens)."""

    def __init__(self, runtime):
        # deferred: llguidance, only for a constrained reply (tools, JSON)
        import llguidance

        sp = runtime.special
        self.runtime = runtime
        self.ends = sorted(sp.end_of_turn) or ([sp.eos] if sp.eos is not None else [])
        control = sp.control
        pieces = [(_CONTROL_PREFIX if t in control else b"") + runtime.token_bytes(t) for t in range(runtime.n_vocab)]
        # control tokens by their text, longest first, for naming them in grammars
        names = {runtime.token_bytes(t).decode("utf-8", "replace"): t for t in control}
        self._control = {k: v for k, v in names.items() if len(k) >= 3}
        self._control_re = re.compile("|".join(re.escape(k) for k in sorted(self._control, key=len, reverse=True))) \
            if self._control else None

        class Wrapper:
            eos_token_id = self.ends[0] if self.ends else 0
            bos_token_id = sp.bos
            tokens = pieces
            special_token_ids = sorted(control)

            def __call__(self, data):
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                return runtime.tokenize(text, add_bos=False, parse_special=False)

        self.ll = llguidance.LLTokenizer(llguidance.TokenizerWrapper(Wrapper()), n_vocab=runtime.n_vocab,
                                         eos_token=self.ends or None)
        self.n_vocab = runtime.n_vocab

    def spell(self, text: str) -> str:
        """A Lark expression for `text`, naming control tokens by id (a grammar literal never matches one)."""
        if not text:
            return '""'
        if self._control_re is None:
            return lit(text)
        parts, pos = [], 0
        for m in self._control_re.finditer(text):
            if m.start() > pos:
                parts.append(lit(text[pos:m.start()]))
            parts.append(f"<[{self._control[m.group()]}]>")
            pos = m.end()
        if pos < len(text):
            parts.append(lit(text[pos:]))
        return " ".join(parts)


def check_grammar(grammar: str, *, param: str) -> None:
    """Raise InvalidRequestError naming `param` when llguidance cannot enforce the grammar (or schema) exactly."""
    # deferred: llguidance, only for a constrained reply (tools, JSON)
    import llguidance

    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        why = re.sub(r"^at \d+\(\d+\): ", "", (messages[0] if messages else "invalid").split("\n")[0])
        raise InvalidRequestError(f"{param} cannot be enforced: {why}", param=param)


class Constraint:
    """Keeps a reply to a grammar; with `trigger`, only from the point the reply writes it."""

    def __init__(self, tokenizer: GrammarTokenizer, grammar: str, *, trigger: str | None = None,
                 at_start: bool = False, also_starts: tuple[str, ...] = ()):
        self.tokenizer, self.grammar = tokenizer, grammar
        self.trigger, self.at_start = trigger, at_start
        self._starts = (trigger, *also_starts) if trigger else ()
        self.matcher = None if trigger else self._matcher()
        self.failed = ""  # why the constraint gave up (a model that wrote its trigger in a way the grammar refuses)
        self._text = b""  # the reply so far, while waiting for the trigger
        self._mask = np.zeros((tokenizer.n_vocab + 31) // 32, dtype=np.int32)
        self.mask_seconds = 0.0  # time spent computing and applying masks (benchmarks)
        self.masks = 0

    def _matcher(self):
        # deferred: llguidance, only for a constrained reply (tools, JSON)
        import llguidance

        m = llguidance.LLMatcher(self.tokenizer.ll, self.grammar, log_level=0)
        if m.is_error():
            raise InvalidRequestError(f"The grammar for this request does not compile: {m.get_error()}")
        return m

    @property
    def engaged(self) -> bool:
        return self.matcher is not None

    def wrap(self, sampler: Sampler) -> Sampler:
        def constrained(logits: np.ndarray, context: Sequence[int]) -> int:
            if self.matcher is None:
                token = sampler(logits, context)
                if self.trigger is not None and not self.failed:
                    self._watch(token)
                return token
            return self._sample(sampler, logits, context)

        return constrained

    def _sample(self, sampler: Sampler, logits: np.ndarray, context: Sequence[int]) -> int:
        m = self.matcher
        if m.is_stopped():  # the grammar is complete: the reply ends here
            return self.tokenizer.ends[0]
        t0 = time.perf_counter()
        m.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little")[: logits.shape[0]].astype(bool)
        masked = np.where(allowed, logits, np.float32(-np.inf)).astype(logits.dtype, copy=False)
        self.mask_seconds += time.perf_counter() - t0
        self.masks += 1
        if not allowed.any():
            self.failed, self.matcher = m.get_error() or "no token fits the grammar", None
            return sampler(logits, context)
        token = sampler(masked, context)
        if not m.consume_token(token):
            self.failed, self.matcher = m.get_error(), None
        return token

    def _watch(self, token: int) -> None:
        self._text += self.tokenizer.runtime.token_bytes(token)
        text = self._text.decode("utf-8", "ignore")
        if self.at_start:
            stripped = text.lstrip()
            if not stripped:
                return
            opening = next((t for t in self._starts if t.startswith(stripped) or stripped.startswith(t)), None)
            if opening is None:
                self.failed = "no call at the start"
                return
            if len(stripped) < len(opening):
                return
            start = len(text) - len(stripped)
        else:
            start = text.find(self.trigger)
            if start == -1:
                return
        self._engage(text[start:])

    def _engage(self, written: str) -> None:
        """Start the grammar at the trigger, with the text the model has already written from it."""
        m = self._matcher()
        tokens = self.tokenizer.runtime.tokenize(written, add_bos=False, parse_special=True)
        if m.consume_tokens(tokens):
            self.matcher = m
        else:
            self.failed = m.get_error() or "the call's start does not fit its grammar"

