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

from basics.errors import ContextFullError, InvalidRequestError, LanternError
from chat_format.chat_template import PLAIN_TURN_MARKERS, ChatTemplate
from chat_format.format_choice import detect
from chat_format.reply import think_tags, thinking_controls
from chat_format.template_budget import TemplateLimits
from engine.constraint import GrammarTokenizer
from engine.decoding import DecodeCounters, Lookup, produce_tokens
from engine.draft_model import DraftModel
from engine.mtp_drafter import MtpDrafter
from engine.draft_policy import DraftLengthPolicy, measure_forward_costs
from engine.drafting import PredictionDrafter, PromptLookupDrafter
from engine.events import Event, Finished, GenerationRequest, GenerationStats, TextDelta
from engine.kv_cache import CacheMixin
from engine.prompt import PromptMixin, check_request
from engine.reply_plan import ModelStyle, ReplyPlan
from engine.sampling import LogprobRecorder, make_sampler
from engine.state_cache import StateCache
from engine.text import TextStream
from runtimes.runtime import Runtime
from runtimes.vision import image_start

# Seconds of a pass of n tokens relative to one, by device: seeded and greedy requests draft by these, never by
# timing, so their draft lengths follow from their text alone on a given device and build. A CPU computes each row;
# a GPU reads the weights once for all of them, so passes of a few tokens cost about what one does.
NOMINAL_COSTS = {1: 1.0, 2: 1.3, 4: 1.9, 8: 3.1, 16: 5.5}  # a typical CPU
NOMINAL_GPU_COSTS = {1: 1.0, 2: 1.04, 4: 1.08, 8: 1.15, 16: 1.3}  # a guess until scripts/gpu-check measures one


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


class Engine(PromptMixin, CacheMixin):
    """Drives one runtime. Not thread-safe: one worker thread owns it (see engine/worker.py)."""

    def __init__(self, runtime: Runtime, *, state_cache: StateCache | None = None,
                 options: EngineOptions | None = None, backend: str | None = None, backend_reason: str = "",
                 draft_model: DraftModel | MtpDrafter | Sequence[DraftModel | MtpDrafter] | None = None):
        self.runtime = runtime
        self.options = options or EngineOptions()
        self.options.validate()
        # What the user should know about this model on this backend (shown by the CLI and the window).
        self.notes: list[str] = list(getattr(runtime, "load_notes", []))
        rollback = getattr(runtime, "rollback_tokens", 0)
        drafters = tuple(draft_model if isinstance(draft_model, (list, tuple)) else
                         () if draft_model is None else (draft_model,))
        drafts = self.options.prompt_lookup or bool(drafters)
        if drafts and not runtime.can_truncate and rollback >= 2:
            # Recurrent layers roll back only the last few tokens (llama.cpp's snapshots): drafts stay that short.
            self.options = replace(self.options, draft_max=min(self.options.draft_max, rollback - 2))
        elif self.options.prompt_lookup and not runtime.can_truncate:
            # A rejected draft must be rolled back; without that, lookup would fail mid-reply.
            self.options = replace(self.options, prompt_lookup=False)
            if not self.notes:
                self.notes.append("Prompt lookup is off: this model's cache cannot be rolled back.")
        self.backend = backend or runtime.name  # how the figures name it: "llamacpp (GPU)", "mlx"
        # draft models and the model's MTP heads, beside prompt lookup
        self.drafters: tuple[DraftModel | MtpDrafter, ...] = drafters if self._can_draft else ()
        if drafters and not self.drafters:
            for d in drafters:
                d.close()
            self.notes.append("The draft model is not used: this model's cache cannot drop a rejected draft.")
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
        check_request(request)
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

    @property
    def draft_model(self) -> DraftModel | MtpDrafter | None:
        """The first of the drafters (None: prompt lookup alone)."""
        return self.drafters[0] if self.drafters else None

    def close(self) -> None:
        for d in self.drafters:
            d.close()
        self.runtime.close()

    def forget_draft_statistics(self) -> None:
        """Start prompt lookup's acceptance estimates afresh (benchmarks: every run starts cold)."""
        if self._policy is not None:
            self._policy.forget()

    # -- generation ----------------------------------------------------------------------------

    def _run(self, request, prompt, dropped, sampler, cancel, t0, plan: ReplyPlan | None,
             shared: int = 0, recorder: LogprobRecorder | None = None) -> Iterator[Event]:
        reused, restored = self._reuse_cache(prompt)
        base = dict(prompt_tokens=len(prompt), cached_tokens=reused, restored_tokens=restored,
                    prefill_tokens=len(prompt) - reused, dropped_messages=dropped, backend=self.backend,
                    backend_reason=self.backend_reason)
        if request.on_prompt is not None:
            request.on_prompt(len(prompt), reused)
        counters = DecodeCounters()
        reply = _ReplyTimes(plan)
        logits = yield from self._prefill(request, prompt, reused, shared, cancel,
                                          lambda: _stats(base, counters, t0, None, None, 0, reply))
        if logits is None:
            return  # cancelled (said)
        yield from self._decode(request, prompt, logits, sampler, cancel, t0, plan, recorder, base, counters, reply)

    def _prefill(self, request, prompt: list[int], reused: int, shared: int, cancel, stats):
        """Compute the prompt's new tokens in chunks; its last logits, or None once cancelled (after saying so)."""
        rt = self.runtime
        todo = prompt[reused:]
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
                yield Finished("cancelled", stats())
                return None
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
        return logits

    def _decode(self, request, prompt: list[int], logits, sampler, cancel, t0, plan: ReplyPlan | None,
                recorder: LogprobRecorder | None, base: dict, counters: DecodeCounters,
                reply: _ReplyTimes) -> Iterator[Event]:
        """The reply's tokens, as text deltas, then its Finished event."""
        rt = self.runtime
        t_prefill = time.perf_counter()
        # A base model in the plain format writes the next turn itself ("\nUser: …"): a new turn marker ends the
        # reply, as the end-of-turn token ends a chat model's (it is no client's stop string: none is reported)
        turns = PLAIN_TURN_MARKERS if request.messages is not None and not self.has_chat_template else ()
        stream = TextStream(request.stop, ends=turns)
        max_tokens = request.max_tokens if request.max_tokens is not None else rt.n_ctx
        ends = self._ends(request, plan)
        lookup = self._request_lookup(request, reply, sampler)
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
                    delta = replace(delta, logprobs=(self._logprob(recorder.produced[len(generated) - 1]),))
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

    def _ends(self, request: GenerationRequest, plan: ReplyPlan | None) -> frozenset[int]:
        """The tokens that end a reply: the model's end of turn (unless ignored), and a finished grammar's end."""
        ends = frozenset() if request.ignore_eos else self.runtime.special.end_of_turn
        if plan is not None and plan.constraint is not None:
            ends = ends | frozenset(plan.constraint.tokenizer.ends[:1])
        return ends

    def _logprob(self, lp):
        """A drawn token's log-probabilities, with the text of it and of its alternatives."""
        piece = self.runtime.token_bytes
        return replace(lp, piece=piece(lp.token), top_pieces=tuple(piece(i) for i, _ in lp.top))

    def _request_lookup(self, request: GenerationRequest, reply: _ReplyTimes, sampler) -> Lookup | None:
        """This request's draft sources: prompt lookup (from its predicted output too, when it gives one) and the
        draft model."""
        use = self.options.prompt_lookup if request.prompt_lookup is None else request.prompt_lookup
        use = (use or bool(request.prediction)) and self._can_draft
        if not use and not self.drafters:
            return None
        # Greedy requests are reproducible too, seed or not: their draft lengths follow from their text, like a
        # seeded reply's (issue 32: by timing, two runs on a busy machine parted at near ties).
        lookup = self._lookup(seeded=request.sampling.seed is not None or request.sampling.temperature <= 0)
        lookup.policy.new_reply()
        if request.prediction:
            predicted = self.runtime.tokenize(request.prediction, add_bos=False, parse_special=False)
            reply.predicted_tokens = len(predicted)
            lookup = replace(lookup, drafter=PredictionDrafter(lookup.drafter, predicted))
        return replace(lookup, models=self.drafters, use_lookup=use, sampler=sampler)

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
        drafts_by_source={k: tuple(v) for k, v in counters.by_source.items()},
        tokens_per_forward=n / (counters.forwards + 1) if n else 0.0,
        **extra,
    )


