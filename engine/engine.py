"""The generation engine: a request in, a stream of small events out.

It remembers which token ids sit in the KV cache, so a new request only computes what is new,
and it keeps saved states of recent conversations so going back to one is instant.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from basics.errors import ContextFullError, ContextOverflowError, InvalidRequestError, LanternError
from chat_format.chat_template import PLAIN_TURN_MARKERS, ChatTemplate, Message, parse_messages
from chat_format.format_choice import detect
from chat_format.reply import think_tags, thinking_controls
from chat_format.template_budget import TemplateLimits
from engine.constraint import GrammarTokenizer
from engine.decoding import DecodeCounters, Lookup, produce_tokens
from engine.draft_policy import DraftLengthPolicy, measure_forward_costs
from engine.drafting import PredictionDrafter, PromptLookupDrafter
from engine.events import Event, Finished, GenerationRequest, GenerationStats, TextDelta
from engine.reply_plan import ModelStyle, ReplyPlan, plan_reply
from engine.sampling import LogprobRecorder, make_sampler
from engine.state_cache import StateCache, common_prefix_len
from engine.text import TextStream
from runtimes.runtime import Runtime, check_token_ids
from runtimes.vision import MARKER, image_start

# Discarding at least this many cached tokens first saves them, so the conversation can come back.
SAVE_WHEN_DISCARDING = 64
# Restoring a saved state must win at least this many tokens over the live cache.
RESTORE_WHEN_GAINING = 16
# Seconds of a pass of n tokens relative to one, by device: seeded and greedy requests draft by these, never by
# timing, so their draft lengths follow from their text alone on a given device and build. A CPU computes each row;
# a GPU reads the weights once for all of them, so passes of a few tokens cost about what one does.
NOMINAL_COSTS = {1: 1.0, 2: 1.3, 4: 1.9, 8: 3.1, 16: 5.5}  # a typical CPU
NOMINAL_GPU_COSTS = {1: 1.0, 2: 1.04, 4: 1.08, 8: 1.15, 16: 1.3}  # a guess until scripts/gpu-check measures one
# The last-position logits of this many recent prompts are kept, so a fully cached prompt reuses them
# instead of recomputing its last token in a batch of another size (which can change a near tie).
PROMPT_LOGITS_KEPT = 16


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings shared by the CLI, the window and the server."""

    prompt_lookup: bool = True
    draft_max: int = 16
    ngram_max: int = 4  # longer n-grams find the right place in code that repeats itself
    adaptive_draft: bool = True  # False: always draft up to draft_max (benchmarks, tests)
    # Forward-pass seconds by pass size, given instead of measured at load and then learnt (tests that drive the
    # adaptive policy must not depend on this machine's speed or load).
    forward_costs: dict[int, float] | None = None
    chat_template: str | None = None  # used instead of the model's own (a model's defaults can set one)

    def validate(self) -> None:
        if not 1 <= self.draft_max <= 64:
            raise InvalidRequestError(f"draft_max must be between 1 and 64, got {self.draft_max}.")
        if not 1 <= self.ngram_max <= 8:
            raise InvalidRequestError(f"ngram_max must be between 1 and 8, got {self.ngram_max}.")


class Engine:
    """Drives one runtime. Not thread-safe: one worker thread owns it (see engine/worker.py)."""

    def __init__(self, runtime: Runtime, *, state_cache: StateCache | None = None,
                 options: EngineOptions | None = None, backend: str | None = None, backend_reason: str = ""):
        self.runtime = runtime
        self.options = options or EngineOptions()
        self.options.validate()
        # What the user should know about this model on this backend (shown by the CLI and the window).
        self.notes: list[str] = list(getattr(runtime, "load_notes", []))
        rollback = getattr(runtime, "rollback_tokens", 0)
        if self.options.prompt_lookup and not runtime.can_truncate and rollback >= 2:
            # Recurrent layers roll back only the last few tokens (llama.cpp's snapshots): drafts stay that short.
            self.options = replace(self.options, draft_max=min(self.options.draft_max, rollback - 2))
        elif self.options.prompt_lookup and not runtime.can_truncate:
            # A rejected draft must be rolled back; without that, lookup would fail mid-reply.
            self.options = replace(self.options, prompt_lookup=False)
            if not self.notes:
                self.notes.append("Prompt lookup is off: this model's cache cannot be rolled back.")
        self.backend = backend or runtime.name  # how the figures name it: "llamacpp (GPU)", "mlx"
        self.backend_reason = backend_reason
        self._policy: DraftLengthPolicy | None = None
        self._drafter: PromptLookupDrafter | None = None
        if self.options.prompt_lookup and runtime.n_past == 0:
            self._lookup()  # measures this device's forward-pass costs now, while the model loads
        self.states = state_cache if state_cache is not None else StateCache()
        sp = runtime.special
        # The prompt may be a few times the context in bytes; a template that writes more is stopped.
        limits = TemplateLimits(max_chars=max(1 << 20, 16 * runtime.n_ctx))
        # A model without a chat template is usually a base model: it continues text, and chats with it run on
        # as "User: ... Assistant: ..." (the window says so; completions suit it)
        template = self.options.chat_template or runtime.chat_template
        self.has_chat_template = bool(template)
        self.template = ChatTemplate(template, bos_token=sp.bos_text, eos_token=sp.eos_text, limits=limits)
        source = self.template.source
        self.style = ModelStyle(detect(source, template_takes_tools=self.template.caps.tools), think_tags(source),
                                harmony="<|channel|>" in source and "<|message|>" in source)
        self.thinking_controls = thinking_controls(source)  # the window shows a chat those its model reads
        self._grammar_tokenizer = None  # built on the first constrained request
        self._images: dict[str, list[int]] = {}  # this request's images: marker -> their positions' ids
        self._prompt_logits: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()  # prompt -> its last logits
        self._tokens: list[int] = []  # exactly the ids in the KV cache
        self._pending: list[int] = []  # generated ids after them, not fed yet (the last sampled one)

    @property
    def _can_draft(self) -> bool:
        """Whether a rejected draft can be taken back out of the cache."""
        return self.runtime.can_truncate or getattr(self.runtime, "rollback_tokens", 0) >= 2

    @property
    def cached_tokens(self) -> list[int]:
        return list(self._tokens)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Run `request`; bad requests raise InvalidRequestError before anything is yielded."""
        t0 = time.perf_counter()
        _check_request(request)
        too_big = [t for t, _ in request.sampling.logit_bias if t >= self.runtime.n_vocab]
        if too_big:
            raise InvalidRequestError(f"logit_bias names token {too_big[0]}, but the model's vocabulary has "
                                      f"{self.runtime.n_vocab} tokens.", param="logit_bias")
        sampler = make_sampler(request.sampling)
        recorder = None
        if request.logprobs is not None:
            if not (isinstance(request.logprobs, int) and 0 <= request.logprobs <= 20):
                raise InvalidRequestError("logprobs asks for 0 to 20 likeliest tokens.", param="logprobs")
            recorder = LogprobRecorder(request.sampling, request.logprobs)
            sampler = recorder.inner(sampler)
        prompt, dropped, plan, shared = self._prompt_tokens(request)
        if plan is not None and plan.constraint is not None:
            sampler = plan.constraint.wrap(sampler)
        if recorder is not None:
            sampler = recorder.outer(sampler)
        return self._run(request, prompt, dropped, sampler, cancel or threading.Event(), t0, plan, shared,
                         recorder=recorder)

    def grammar_tokenizer(self):
        """This model's vocabulary for llguidance (built once, on first use)."""
        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = GrammarTokenizer(self.runtime)
        return self._grammar_tokenizer

    # -- the prompt ---------------------------------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """How many tokens `request`'s prompt is, as its reply's figures would say (nothing is computed)."""
        _check_request(request)
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

    # -- the KV cache ---------------------------------------------------------------------------

    def _reuse_cache(self, prompt: list[int]) -> tuple[int, int]:
        """Bring the KV cache to the longest usable prefix of `prompt`. Returns (reused, restored)."""
        rt = self.runtime
        n_common = common_prefix_len(self._tokens, prompt)
        if not rt.can_truncate and n_common < len(self._tokens):
            n_common = 0  # a recurrent state cannot be cut back: the live cache serves only prompts that extend it
        restored = 0
        gain = RESTORE_WHEN_GAINING if rt.can_truncate else 0  # a state that cannot be cut back: any gain counts
        usable = None
        if not rt.can_truncate or getattr(rt, "sliding_window", 0):
            usable = self._whole_state(prompt)  # a saved state is used only where it needs no cutting back
        match = self.states.best_match(prompt, better_than=n_common + gain, usable=usable)
        saved = None
        if match is not None:
            try:  # read it before saving the current state can push it out of the budget
                saved = self.states.load(match[1])
            except OSError:
                match = None  # a spilled state that is gone from disk: compute instead
        if match is not None or len(self._tokens) - n_common >= SAVE_WHEN_DISCARDING:
            self._save_current()
        if match is not None:
            n_match, entry = match
            try:
                rt.restore_state(saved, len(entry.tokens))
                self._tokens, n_common, restored = list(entry.tokens), n_match, n_match
            except LanternError:
                self._tokens = []  # the cache was reset; compute from scratch
                n_common = 0
        self._pending = []
        n_keep = image_start(prompt, min(n_common, len(prompt) - 1))  # at least one token is fed, for fresh logits...
        if n_common >= len(prompt) and tuple(prompt) in self._prompt_logits:
            n_keep = len(prompt)  # ...unless this very prompt's logits were kept
        if not rt.truncate(n_keep):
            rt.reset()
            n_keep = 0
        del self._tokens[n_keep:]
        return n_keep, min(restored, n_keep)

    def _whole_state(self, prompt: list[int]):
        """For caches that cannot be cut back (recurrent layers; a restored sliding window): a saved state serves
        `prompt` only when it is all a prefix of it, and shorter (or this prompt's last logits are kept)."""
        key = tuple(prompt)
        window = getattr(self.runtime, "sliding_window", 0) if self.runtime.can_truncate else 0

        def usable(tokens: tuple[int, ...], n_match: int) -> bool:
            if window and len(tokens) <= window:
                return True  # the whole state is inside the window: a restored one can be cut like a live one
            return n_match == len(tokens) and (n_match < len(prompt) or key in self._prompt_logits)

        return usable

    def _needs_checkpoints(self, n_tokens: int) -> bool:
        """Whether a state of n_tokens, once saved, can only be restored whole: recurrent layers, or sliding-window
        layers whose window it outgrew."""
        window = getattr(self.runtime, "sliding_window", 0)
        return not self.runtime.can_truncate or bool(window and n_tokens > window)

    def _checkpoint(self, prompt: list[int]) -> None:
        """Save the state at the prompt's end when the cache cannot be cut back (recurrent layers), so a regenerate,
        an edit after this point or a switch back restores it instead of computing everything again."""
        try:
            self.states.put(prompt, self.runtime.save_state(), keep_prefixes=True)  # the earlier ones stay useful
        except LanternError:
            pass  # a checkpoint is an optimisation: without it the prompt is computed again

    def _prompt_logits_for(self, prompt: tuple[int, ...], computed: np.ndarray | None) -> np.ndarray:
        """The prompt's last-position logits: the ones just computed (kept for next time), or the kept ones."""
        if computed is None:
            self._prompt_logits.move_to_end(prompt)
            return self._prompt_logits[prompt]
        self._prompt_logits[prompt] = computed
        self._prompt_logits.move_to_end(prompt)
        while len(self._prompt_logits) > PROMPT_LOGITS_KEPT:
            self._prompt_logits.popitem(last=False)
        return computed

    def _save_current(self) -> None:
        if len(self._tokens) >= SAVE_WHEN_DISCARDING:
            self.states.put(self._tokens, self.runtime.save_state(),
                            keep_prefixes=self._needs_checkpoints(len(self._tokens)))

    def close(self) -> None:
        self.runtime.close()

    def forget_draft_statistics(self) -> None:
        """Start prompt lookup's acceptance estimates afresh (benchmarks: every run starts cold)."""
        if self._policy is not None:
            self._policy.forget()

    def adopt_cache(self, tokens: Sequence[int]) -> None:
        """The runtime's cache was given `tokens` from elsewhere (another slot's shared prefix): they count as cached."""
        self._tokens, self._pending = list(tokens), []

    def forget_cache(self) -> None:
        """Drop the live KV cache (the saved states stay)."""
        self.runtime.reset()
        self._tokens, self._pending = [], []

    # -- generation ----------------------------------------------------------------------------

    def _run(self, request, prompt, dropped, sampler, cancel, t0, plan: ReplyPlan | None,
             shared: int = 0, recorder: LogprobRecorder | None = None) -> Iterator[Event]:
        rt = self.runtime
        reused, restored = self._reuse_cache(prompt)
        todo = prompt[reused:]
        base = dict(prompt_tokens=len(prompt), cached_tokens=reused, restored_tokens=restored,
                    prefill_tokens=len(todo), dropped_messages=dropped, backend=self.backend,
                    backend_reason=self.backend_reason)
        if request.on_prompt is not None:
            request.on_prompt(len(prompt), reused)
        counters = DecodeCounters()
        reply = _ReplyTimes(plan)
        logits = None
        # Where the cache cannot be cut back, a checkpoint where the system prompt and tools end serves the next
        # conversation that shares them (agents start each task that way).
        stops = [reused + lo for lo in range(rt.n_batch, len(todo), rt.n_batch)]
        if reused < shared < len(prompt) - 1 and self._needs_checkpoints(shared):
            stops = sorted({*stops, shared})
        if self._images:  # an image is encoded whole: a chunk ends before it, never inside it
            stops = sorted({image_start(prompt, s) for s in stops} - {reused})
        for lo, hi in zip([reused, *stops], [*stops, len(prompt)]) if todo else ():
            if cancel.is_set():
                yield Finished("cancelled", _stats(base, counters, t0, None, None, 0, reply))
                return
            chunk = prompt[lo:hi]
            logits = rt.forward(chunk, rt.n_past)[0]
            self._tokens.extend(chunk)
            if request.on_prefill is not None:
                request.on_prefill(hi - reused, len(todo))
            if hi == shared and shared in stops:
                self._checkpoint(prompt[:shared])
        logits = self._prompt_logits_for(tuple(prompt), logits)
        if todo and self._needs_checkpoints(len(prompt)):
            self._checkpoint(prompt)
        t_prefill = time.perf_counter()

        # A base model in the plain format writes the next turn itself ("\nUser: …"): a new turn marker ends the
        # reply, as the end-of-turn token ends a chat model's (it is no client's stop string: none is reported)
        turns = PLAIN_TURN_MARKERS if request.messages is not None and not self.has_chat_template else ()
        stream = TextStream(request.stop, ends=turns)
        max_tokens = request.max_tokens if request.max_tokens is not None else rt.n_ctx
        ends = frozenset() if request.ignore_eos else rt.special.end_of_turn
        if plan is not None and plan.constraint is not None:
            ends = ends | frozenset(plan.constraint.tokenizer.ends[:1])  # how a finished grammar ends the reply
        lookup = self._request_lookup(request, reply)
        tokens = produce_tokens(rt, self._tokens, logits, sampler, list(prompt), counters, max_new=max_tokens,
                                ends=ends, lookup=lookup)
        generated: list[int] = []
        t_first = None
        reason = "length"
        try:
            for token in tokens:
                if t_first is None:
                    t_first = time.perf_counter()
                if token in ends:
                    reason = "stop"
                    break
                generated.append(token)
                delta = reply.delta(stream.push(rt.token_bytes(token)), (token,), t0)
                if recorder is not None:  # every produced token was drawn once, in order
                    lp = recorder.produced[len(generated) - 1]
                    lp = replace(lp, piece=rt.token_bytes(lp.token),
                                 top_pieces=tuple(rt.token_bytes(i) for i, _ in lp.top))
                    delta = replace(delta, logprobs=(lp,))
                yield delta
                if stream.stopped:
                    reason = "stop"
                    break
                if len(generated) >= max_tokens or len(prompt) + len(generated) >= rt.n_ctx:
                    break
                if cancel.is_set():
                    reason = "cancelled"
                    break
        except ContextFullError:
            pass  # the slots' shared context is full: the reply ends here, "length" as at a context's own end
        except LanternError as e:
            yield Finished("error", _stats(base, counters, t0, t_prefill, t_first, len(generated), reply),
                           error=str(e))
            return
        finally:
            tokens.close()
            fed_reply = len(self._tokens) - len(prompt)  # reply tokens already in the KV cache
            self._pending = generated[fed_reply:] if 0 <= fed_reply < len(generated) else []
        tail = reply.delta(stream.finish(), (), t0)
        if tail.text or tail.reasoning or tail.calls:
            yield tail
        last, calls = reply.finish(t0)
        if last.text or last.reasoning or last.calls:
            yield last
        if calls and reason == "stop":
            reason = "tool_calls"
        yield Finished(reason, _stats(base, counters, t0, t_prefill, t_first, len(generated), reply),
                       tool_calls=tuple(calls or ()), stop_sequence=stream.matched)

    def _request_lookup(self, request: GenerationRequest, reply: _ReplyTimes) -> Lookup | None:
        """Prompt lookup for this request, drafting from its predicted output too when it gives one."""
        use = self.options.prompt_lookup if request.prompt_lookup is None else request.prompt_lookup
        use = (use or bool(request.prediction)) and self._can_draft
        if not use:
            return None
        # Greedy requests are reproducible too, seed or not: their draft lengths follow from their text, like a
        # seeded reply's (issue 32: by timing, two runs on a busy machine parted at near ties).
        lookup = self._lookup(seeded=request.sampling.seed is not None or request.sampling.temperature <= 0)
        lookup.policy.new_reply()
        if request.prediction:
            predicted = self.runtime.tokenize(request.prediction, add_bos=False, parse_special=False)
            reply.predicted_tokens = len(predicted)
            lookup = replace(lookup, drafter=PredictionDrafter(lookup.drafter, predicted))
        return lookup

    def _lookup(self, *, seeded: bool = False) -> Lookup:
        self._drafter = self._drafter or PromptLookupDrafter(ngram_max=self.options.ngram_max)
        if seeded:
            # A seeded reply must come out the same every time: its draft lengths (which decide how the
            # forward passes are batched) follow from its own text alone, never from timing or earlier requests.
            nominal = NOMINAL_GPU_COSTS if getattr(self.runtime, "on_gpu", False) else NOMINAL_COSTS
            policy = DraftLengthPolicy(nominal, draft_max=self.options.draft_max, learn_costs=False)
            return Lookup(self._drafter, policy, adaptive=self.options.adaptive_draft)
        if self._policy is None:
            given = self.options.forward_costs
            costs = given
            if costs is None and self.runtime.n_past == 0:
                costs = measure_forward_costs(self.runtime)
            self._policy = DraftLengthPolicy(costs or NOMINAL_COSTS, draft_max=self.options.draft_max,
                                             learn_costs=given is None)
        return Lookup(self._drafter, self._policy, adaptive=self.options.adaptive_draft)


class _ReplyTimes:
    """Splits a chat reply as it streams (ReplyPlan's parser) and times its reasoning."""

    def __init__(self, plan: ReplyPlan | None):
        self.parser = plan.parser if plan is not None else None
        self.constraint = plan.constraint if plan is not None else None
        self.reasoning_end: float | None = None
        self.predicted_tokens = 0

    def delta(self, text: str, tokens: tuple[int, ...], t0: float) -> TextDelta:
        if self.parser is None:
            return TextDelta(text, tokens)
        d = self.parser.push(text) if text else None
        if d is None:
            return TextDelta("", tokens)
        if d.reasoning:
            self.reasoning_end = time.perf_counter()
        return TextDelta(d.content, tokens, d.reasoning, d.calls)

    def finish(self, t0: float):
        if self.parser is None:
            return TextDelta("", ()), None
        d, calls = self.parser.finish()
        if d.reasoning:
            self.reasoning_end = time.perf_counter()
        return TextDelta(d.content, (), d.reasoning, d.calls), calls


def _stats(base: dict, counters: DecodeCounters, t0: float, t_prefill: float | None, t_first: float | None,
           n: int, reply: _ReplyTimes | None = None) -> GenerationStats:
    now = time.perf_counter()
    extra = {}
    if reply is not None:
        extra = dict(predicted_tokens=reply.predicted_tokens, accepted_prediction_tokens=counters.accepted_predicted,
                     reasoning_ms=(reply.reasoning_end - t0) * 1000 if reply.reasoning_end else 0.0,
                     mask_ms=reply.constraint.mask_seconds * 1000 if reply.constraint is not None else 0.0)
    decode_s = now - t_first if t_first is not None else 0.0
    return GenerationStats(
        **base,
        prefill_ms=((t_prefill or now) - t0) * 1000,
        ttft_ms=((t_first or now) - t0) * 1000,
        completion_tokens=n,
        decode_tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
        total_ms=(now - t0) * 1000,
        drafted_tokens=counters.drafted,
        accepted_tokens=counters.accepted,
        tokens_per_forward=n / (counters.forwards + 1) if n else 0.0,
        **extra,
    )


def _check_request(request: GenerationRequest) -> None:
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

