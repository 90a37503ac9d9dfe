"""The engine's prompts: a request's messages rendered by the model's template (turns dropped to fit when asked,
images turned into their positions) and tokenized reusing the ids already in the cache, so KV reuse is never broken
by a retokenized reply (a mixin of engine.engine.Engine, kept apart for size)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from basics.errors import ContextOverflowError, InvalidRequestError
from chat_format.chat_template import Message, parse_messages
from engine.events import GenerationRequest
from engine.reply_plan import ReplyPlan, plan_reply
from runtimes.runtime import check_token_ids
from runtimes.vision import MARKER


def check_request(request: GenerationRequest) -> None:
    if (request.messages is None) == (request.prompt is None):
        raise InvalidRequestError("Give either chat messages or a raw prompt, not both or neither.")
    if request.prompt is not None and not request.prompt:
        raise InvalidRequestError("The prompt is empty.")
    if request.prompt is not None and not isinstance(request.prompt, str) and \
            any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in request.prompt):
        raise InvalidRequestError("A prompt is text or a list of token ids.")
    if request.max_tokens is not None and (not isinstance(request.max_tokens, int) or request.max_tokens < 1):
        raise InvalidRequestError(f"max_tokens must be at least 1, got {request.max_tokens!r}.")
    if any(not isinstance(s, str) for s in request.stop):
        raise InvalidRequestError("Stop sequences must be strings.")


class PromptMixin:
    """Needs the engine's runtime, template, style, states, _tokens, _pending and _images."""

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """How many tokens `request`'s prompt is, as its reply's figures would say (nothing is computed)."""
        check_request(request)
        return len(self._prompt_tokens(request)[0])

    def _prompt_tokens(self, request: GenerationRequest) -> tuple[list[int], int, ReplyPlan | None, int]:
        """The prompt's tokens, the turns dropped to fit it, the reply's plan, and where its shared part ends."""
        n_ctx = self.runtime.n_ctx
        self._images = {}
        if request.prompt is not None:
            if request.tools or request.json_schema is not None:
                raise InvalidRequestError("Tools and JSON replies need chat messages, not a raw prompt.")
            if isinstance(request.prompt, str):
                tokens = self.tokenize_reusing(request.prompt, add_bos=self.runtime.special.add_bos)
            else:  # token ids, as OpenAI's completions take them: the client chose them, BOS included or not
                tokens = [int(t) for t in request.prompt]
                check_token_ids(tokens, self.runtime.n_vocab)
            return self._check_fits(tokens, n_ctx), 0, None, 0
        messages = parse_messages(request.messages or [])
        self._images = self._prepare_images(messages)
        dropped = 0
        while True:
            plan = plan_reply(request, messages, self.style)
            parts, add_bos = self._render(plan.messages, tools=plan.tools, options=plan.options,
                                          continuing=request.continue_reply)
            tokens = self.tokenize_reusing(parts, add_bos=add_bos)
            if len(tokens) < n_ctx or not request.drop_oldest_turns:
                break
            messages, n = _drop_oldest_turn(messages)
            if n == 0:
                break
            dropped += n
        constrained = plan.setup is not None or plan.json_schema is not None
        plan.finish("".join(p for p, _ in parts), self.grammar_tokenizer() if constrained else None)
        tokens = self._check_fits(tokens, n_ctx, dropping=request.drop_oldest_turns)
        rt = self.runtime
        cuts_back = rt.can_truncate and not getattr(rt, "sliding_window", 0)
        shared = 0 if cuts_back else self._shared_end(plan.messages, parts, add_bos, tokens)
        return tokens, dropped, plan, shared

    def _prepare_images(self, messages: list[Message]) -> dict[str, list[int]]:
        """Each image in the messages, decoded by the model's projector: marker -> its positions' ids."""
        images = [data for m in messages for data in m.images]
        if not images:
            return {}
        vision = getattr(self.runtime, "vision", None)
        if vision is None:
            why = ("it was loaded without a vision projector (an mmproj GGUF beside the model file)"
                   if self.runtime.name == "llamacpp" else "Lantern runs images on llama.cpp only (for now)")
            raise InvalidRequestError(f"This model cannot see images: {why}. Send text only, or load a model that "
                                      "sees (Gemma 3, SmolVLM, LLaVA...) with its projector.", param="messages")
        return dict(vision.prepare(data) for data in images)

    def _tokenize_piece(self, text: str, *, parse_special: bool) -> list[int]:
        """Tokenize a piece of the prompt; the markers of this request's images become their positions."""
        tokenize = self.runtime.tokenize
        if not self._images or "\ue000" not in text:
            return tokenize(text, add_bos=False, parse_special=parse_special)
        out, at = [], 0
        for m in MARKER.finditer(text):
            ids = self._images.get(m.group(0))
            if ids is None:
                continue  # a marker typed as text, of no image here: it stays text
            if m.start() > at:
                out += tokenize(text[at:m.start()], add_bos=False, parse_special=parse_special)
            out += ids
            at = m.end()
        if at < len(text):
            out += tokenize(text[at:], add_bos=False, parse_special=parse_special)
        return out

    def _shared_end(self, messages: list[Message], parts: list[tuple[str, bool]], add_bos: bool,
                    tokens: list[int]) -> int:
        """Where the part a new conversation shares ends: just before the first user message's text (the system
        prompt and tools). 0 when there is no system message or the tokens do not split there."""
        if len(messages) < 2 or messages[0].role != "system":
            return 0
        texts = [i for i, (text, literal) in enumerate(parts) if literal and text]
        if len(texts) < 2:
            return 0
        head = self.tokenize_reusing(parts[:texts[1]], add_bos=add_bos)
        return len(head) if tokens[:len(head)] == head else 0

    def _render(self, messages: list[Message], *, tools=None, options=None,
                continuing: bool = False) -> tuple[list[tuple[str, bool]], bool]:
        """The prompt as (text, is_content) parts, and whether to start with a BOS token. `continuing`: the last
        message is a reply to go on with, so the prompt ends at its last word."""
        if continuing:
            parts = continued_parts(messages, self.template.render_parts(
                messages, tools=tools, options=options, add_generation_prompt=False))
        else:
            parts = self.template.render_parts(messages, tools=tools, options=options)
        sp = self.runtime.special
        if parts and not parts[0][1] and sp.bos is not None and sp.bos_text and parts[0][0].startswith(sp.bos_text):
            parts[0] = (parts[0][0][len(sp.bos_text):], False)  # the template wrote BOS: one BOS token, never two
            return [p for p in parts if p[0]], True
        return parts, sp.add_bos

    @staticmethod
    def _check_fits(tokens: list[int], n_ctx: int, *, dropping: bool = False) -> list[int]:
        if len(tokens) >= n_ctx and dropping:  # what remains after every older turn was left out
            raise ContextOverflowError(
                f"The last message alone makes a prompt of {len(tokens)} tokens, but the context holds {n_ctx} (and "
                "the reply needs room). Shorten the message, or load the model with a larger context.",
                prompt_tokens=len(tokens), n_ctx=n_ctx,
            )
        if len(tokens) >= n_ctx:
            raise ContextOverflowError(
                f"The prompt is {len(tokens)} tokens but the context holds {n_ctx} (and the reply needs room). "
                "Shorten the conversation, load the model with a larger context, or allow dropping the oldest turns.",
                prompt_tokens=len(tokens), n_ctx=n_ctx,
            )
        return tokens

    def tokenize_reusing(self, text: str | list[tuple[str, bool]], *, add_bos: bool) -> list[int]:
        """Tokenize `text`, keeping the exact ids of any known token sequence it starts with.

        Known sequences are the live cache (plus the reply just generated) and the saved states.
        Re-tokenizing a reply's text often gives other ids than the model produced, which would
        silently break KV reuse (llama.cpp #11970, llama-cpp-python #1369). `text` may come as
        (text, is_content) parts: content is tokenized with special-token parsing off.
        """
        parts = [(text, False)] if isinstance(text, str) else text
        encoded = [(p.encode("utf-8"), literal) for p, literal in parts]
        data = b"".join(p for p, _ in encoded)
        lead = [self.runtime.special.bos] if add_bos and self.runtime.special.bos is not None else []
        content, start = [], 0  # byte ranges of message content: no control token may be matched inside one
        for piece, literal in encoded:
            if literal:
                content.append((start, start + len(piece)))
            start += len(piece)
        best_k, best_off, best = len(lead), 0, lead
        for known in [self._tokens + self._pending, *self.states.token_lists()]:
            k, off = self._text_prefix(known, lead, data, content)
            if k > best_k:
                best_k, best_off, best = k, off, known
        tokens = list(best[:best_k])
        start = 0
        for piece, literal in encoded:  # the rest, part by part
            end = start + len(piece)
            if end > best_off:
                chunk = piece[max(0, best_off - start):].decode("utf-8")
                tokens += self._tokenize_piece(chunk, parse_special=not literal)
            start = end
        return tokens

    def _text_prefix(self, known: Sequence[int], lead: list[int], data: bytes,
                     content: Sequence[tuple[int, int]] = ()) -> tuple[int, int]:
        """How many of `known` tokens spell a prefix of `data` (ending on a character boundary).

        A control token (<|im_end|>) never matches inside message content: typed, those characters are text.
        """
        if list(known[: len(lead)]) != lead:
            return 0, 0
        k, off, piece = len(lead), 0, self.runtime.token_bytes
        control = self.runtime.special.control
        offsets = []
        for t in known[len(lead):]:
            p = piece(t)
            if not data.startswith(p, off):
                break
            if t in control and any(lo < off + len(p) and off < hi for lo, hi in content):
                break
            offsets.append(off)
            off += len(p)
            k += 1
        while k > len(lead) and off < len(data) and (data[off] & 0xC0) == 0x80:
            k -= 1
            off = offsets.pop()
        return k, off


def _drop_oldest_turn(messages: list[Message]) -> tuple[list[Message], int]:
    """Remove the oldest non-system messages up to the next user turn; never the last message."""
    idx = [i for i, m in enumerate(messages) if m.role != "system"]
    if len(idx) <= 1:
        return messages, 0
    drop = {idx[0]}
    for i in idx[1:-1]:
        if messages[i].role == "user":
            break
        drop.add(i)
    return [m for i, m in enumerate(messages) if i not in drop], len(drop)


def continued_parts(messages: list[Message], parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """A rendered chat cut just after its last message's text (a reply the model goes on writing): what the template
    writes after it (end of turn) is left out."""
    last = messages[-1] if messages else None
    if last is None or last.role != "assistant" or not last.content:
        raise InvalidRequestError("Only a reply can be continued: the last message must be the assistant's, with text.")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == (last.content, True):
            return parts[:i + 1]
    text = "".join(p for p, _ in parts)  # the template changed the text around it (a trim): found as written
    at = text.rfind(last.content)
    if at < 0:
        raise InvalidRequestError("This model's chat template rewrites replies, so this one cannot be continued; "
                                  "regenerate it with a higher length limit instead.")
    return [(text[:at], False), (last.content, True)] if at else [(last.content, True)]
