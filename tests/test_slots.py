"""Several conversations at once (continuous batching, issue 20) on the real starter model: replies equal to the same
requests run alone (greedy, up to near ties: tests/conftest.py), one slot cancelled leaving the others, a long
prompt read in chunks between the others' tokens, and a conversation's next turn going back to the slot that holds
it (its prompt reported cached)."""
from __future__ import annotations

import threading

import pytest
from conftest import NEAR_TIE, load, reply_tokens as _tokens

from engine.engine import EngineOptions
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)
QUESTIONS = ["Name three colours of the rainbow.", "Write a haiku about the sea.", "What is 12 times 12?",
             "Say hello in French."]
MORE = ["Name a fruit that is yellow.", "What colour is the sky?", "Count from one to five.",
        "Describe a cat in one sentence."]  # with QUESTIONS: eight clients for four slots


def _request(question: str, max_tokens: int = 24, **extra) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": question}], sampling=GREEDY,
                             max_tokens=max_tokens, **extra)


@pytest.fixture(scope="module")
def solo_replies(smollm2_path):
    """Each question alone, plain greedy on one sequence: the reference tokens and each step's top-two gap."""
    from conftest import reference_greedy

    rt = load(smollm2_path, n_ctx=2048)
    from engine.engine import Engine

    engine = Engine(rt, options=EngineOptions(prompt_lookup=False))
    out = {}
    for q in QUESTIONS + MORE:
        prompt = engine._prompt_tokens(_request(q))[0]
        out[q] = reference_greedy(rt, prompt, 24)
    rt.close()
    return out


@pytest.fixture
def slots(smollm2_path):
    from engine.slots import SlotWorker

    made = []

    def make(n: int, **options):
        w = SlotWorker(load(smollm2_path, n_ctx=2048, n_batch=options.pop("n_batch", 512), slots=n),
                       options=EngineOptions(**{"prompt_lookup": False, **options}))
        w.wait_ready(120)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.mark.parametrize("n", [1, 2, 4])
def test_replies_beside_others_equal_their_solo_replies(n, slots, solo_replies, smollm2_path):
    from conftest import assert_same_up_to_near_tie

    w = slots(n)
    w.scheduler.keep_steps = True
    gens = [w.submit(_request(q)) for q in QUESTIONS]  # more requests than slots wait for one
    results = [_tokens(g) for g in gens]
    ends = w.runtime.special.end_of_turn
    for q, (tokens, final) in zip(QUESTIONS, results):
        reference, gaps = solo_replies[q]
        assert final.reason in ("stop", "length")
        assert_same_up_to_near_tie(reference, gaps, tokens, ends=ends)
    widest = max(len(step) for step in w.scheduler.steps)
    assert widest == min(n, len(QUESTIONS))  # with n slots, n sequences were computed in one batch


def test_cancelling_one_slot_leaves_the_others_untouched(slots, solo_replies):
    from conftest import assert_same_up_to_near_tie

    w = slots(2)
    long = w.submit(_request(QUESTIONS[1], max_tokens=400, ignore_eos=True))
    other = w.submit(_request(QUESTIONS[0]))
    first = threading.Event()

    def cancel_soon():
        from engine.events import TextDelta

        for event in long:
            if isinstance(event, TextDelta) and not first.is_set():
                first.set()
                long.cancel()

    t = threading.Thread(target=cancel_soon)
    t.start()
    tokens, final = _tokens(other)
    t.join(60)
    assert first.is_set()
    reference, gaps = solo_replies[QUESTIONS[0]]
    assert_same_up_to_near_tie(reference, gaps, tokens, ends=w.runtime.special.end_of_turn)
    again, final = _tokens(w.submit(_request(QUESTIONS[2])))  # the cancelled slot is free again
    assert final.reason in ("stop", "length") and again


def test_a_long_prompt_is_read_in_chunks_between_the_others_tokens(slots):
    w = slots(2, n_batch=128)
    w.scheduler.keep_steps = True
    talker = w.submit(_request(QUESTIONS[1], max_tokens=120, ignore_eos=True))
    from engine.events import TextDelta

    it = iter(talker)
    while not isinstance(next(it), TextDelta):  # the first is decoding before the long prompt comes
        pass
    long_text = "The keeper wrote the weather in the log every hour of the night. " * 60  # ~900 tokens
    reader = w.submit(_request(long_text + "What did the keeper write?", max_tokens=4))
    _tokens(reader)
    for _ in it:
        pass
    assert all(sum(n for _s, n in step) <= 128 + 32 for step in w.scheduler.steps)  # never more than a chunk
    mixed = [step for step in w.scheduler.steps if len(step) == 2 and max(n for _s, n in step) > 32]
    assert len(mixed) >= 5  # the prompt went in chunks, each beside the other's next token


def test_a_conversations_next_turn_goes_back_to_the_slot_that_holds_it(slots):
    w = slots(2)
    chat = [{"role": "user", "content": "You are a lighthouse keeper. " * 30 + "Who are you?"}]
    text, tokens, final = "", [], None
    from engine.events import TextDelta

    for event in w.submit(GenerationRequest(messages=chat, sampling=GREEDY, max_tokens=12)):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            final = event
    _tokens(w.submit(_request(QUESTIONS[0])))  # another conversation, in the other slot
    follow = chat + [{"role": "assistant", "content": text}, {"role": "user", "content": "And your name?"}]
    _, again = _tokens(w.submit(GenerationRequest(messages=follow, sampling=GREEDY, max_tokens=4)))
    assert again.stats.cached_tokens >= final.stats.prompt_tokens  # only the new turn was read


def test_prompt_lookup_runs_per_slot_with_the_same_replies(slots, smollm2_path):
    from engine.engine import Engine
    from conftest import assert_same_up_to_near_tie, reference_greedy

    text = ("The keeper climbs the stairs every evening at dusk. She checks the lamp, cleans the lens and winds the "
            "clockwork that turns the light.")
    copy = _request(f"Repeat this text exactly:\n\n{text}", max_tokens=40)
    rt = load(smollm2_path, n_ctx=2048)
    prompts = {q: Engine(rt, options=EngineOptions(prompt_lookup=False))._prompt_tokens(r)[0]
               for q, r in (("copy", copy), ("other", _request(QUESTIONS[3])))}
    references = {q: reference_greedy(rt, p, 40 if q == "copy" else 24) for q, p in prompts.items()}
    rt.close()
    w = slots(2, prompt_lookup=True, adaptive_draft=False, forward_costs={1: 0.01, 8: 0.011, 17: 0.012})
    a, b = w.submit(copy), w.submit(_request(QUESTIONS[3]))
    (copied, final), (other, _f) = _tokens(a), _tokens(b)
    ends = w.runtime.special.end_of_turn
    assert_same_up_to_near_tie(*references["copy"], copied, ends=ends)
    assert_same_up_to_near_tie(*references["other"], other, ends=ends)
    assert final.stats.tokens_per_forward > 1.5  # drafts from its own prompt, verified in the shared batch


def test_the_endpoint_answers_clients_at_once_each_as_it_would_alone(smollm2_path, solo_replies):
    """`lantern serve --slots 8`: eight official openai clients at once, each reply its solo reply (up to near ties).

    Each client has a slot of its own, so each prompt is read whole as the solo reference's was: a prompt read after
    a cached prefix (another conversation's system part in a reused slot) can part from its solo reply beyond the
    near-tie rule, which is calibrated for batches only (engine/slots.py, SHARE_AT_LEAST)."""
    import time

    import httpx
    import openai

    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService, default_opener
    from runtimes.runtime import LoadOptions
    from models.registry import BUILTIN_MODELS

    name = "smollm2-135m-instruct"
    service = ModelService(name, models=lambda: list(BUILTIN_MODELS), max_queue=16,
                           open_worker=default_opener(options=LoadOptions(n_ctx=2048, slots=8),
                                                      engine_options=EngineOptions(prompt_lookup=False)))
    server = LanternServer(service, ServerSettings(port=0)).start()
    try:
        deadline = time.monotonic() + 120
        while httpx.get(server.base_url.removesuffix("/v1") + "/health").json()["status"] == "loading" and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        from engine.slots import SlotWorker

        worker = service._worker
        assert isinstance(worker, SlotWorker) and worker.wait_ready(60)
        worker.scheduler.keep_steps = True
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        replies: dict[str, str] = {}

        def ask(q: str) -> None:
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": q}], temperature=0,
                                               max_tokens=24)
            replies[q] = r.choices[0].message.content

        threads = [threading.Thread(target=ask, args=(q,)) for q in QUESTIONS + MORE]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        rt = load(smollm2_path, n_ctx=256)
        try:
            assert sorted(replies) == sorted(QUESTIONS + MORE)
            for q in QUESTIONS + MORE:
                reference, gaps = solo_replies[q]
                got = rt.tokenize(replies[q], add_bos=False, parse_special=False)
                expected = [t for t in reference if t not in rt.special.end_of_turn]
                part = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
                if part is None:
                    assert rt.detokenize(expected) == replies[q]
                else:  # parted from the solo reply only at a near tie
                    assert gaps[part] < NEAR_TIE, (q, part, replies[q])
        finally:
            rt.close()
        assert max(len(step) for step in worker.scheduler.steps) >= 2  # the clients' tokens shared batches
    finally:
        server.stop()


def test_the_command_line_takes_slots_and_mlx_runs_them_too(smollm2_mlx_path):
    from test_cli import lantern

    from app.wiring import start_worker
    from runtimes.runtime import LoadOptions
    from engine.slots import SlotWorker
    from conftest import assert_same_up_to_near_tie, reference_greedy, starter_label

    args = ["generate", "--model", "smollm2-135m-instruct", "--max-tokens", "8", "--temperature", "0", "--n-ctx",
            "512", "The capital of France is"]
    one, two = lantern(*args), lantern(*args, "--slots", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout == one.stdout and starter_label() in two.stderr  # one request: the same greedy reply
    bad = lantern(*args, "--slots", "65")
    assert bad.returncode != 0 and "Slots must be between 1 and 64" in bad.stderr
    # MLX runs slots too (runtimes/mlx_slots.py): two requests at once, each its reply alone (greedy, same weights)
    requests = [_request(q, max_tokens=6) for q in QUESTIONS[:2]]
    alone = start_worker(smollm2_mlx_path, backend="mlx", options=LoadOptions(n_ctx=512))
    try:
        solo = alone.call(lambda e: [reference_greedy(e.runtime, e._prompt_tokens(r)[0], 6) for r in requests])
        solo, ends = solo.result(120), alone.call(lambda e: e.runtime.special.end_of_turn).result(10)
    finally:
        alone.close()
    worker = start_worker(smollm2_mlx_path, backend="mlx", options=LoadOptions(n_ctx=512, slots=2))
    try:
        gens = [worker.submit(r) for r in requests]
        for (reference, gaps), gen in zip(solo, gens):
            tokens, final = _tokens(gen)
            assert tokens and final.reason in ("stop", "length")
            assert_same_up_to_near_tie(reference, gaps, tokens, ends)
        assert isinstance(worker, SlotWorker) and worker.runtime.name == "mlx" and worker.runtime.slots == 2
    finally:
        worker.close()


def test_an_idle_slot_gives_its_cells_to_a_request_that_needs_them_and_comes_back_from_the_state_cache(smollm2_path):
    from engine.slots import SlotWorker

    w = SlotWorker(load(smollm2_path, n_ctx=512, slots=2), options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        first = GenerationRequest(prompt="Lighthouse keepers log the weather. " * 50, sampling=GREEDY, max_tokens=8)
        other = GenerationRequest(prompt="Bees visit flowers all day long. " * 50, sampling=GREEDY, max_tokens=8)
        _, a = _tokens(w.submit(first))
        assert sum(w.runtime.seq_past(s) for s in range(2)) > 256  # more than half the shared cells
        _, b = _tokens(w.submit(other))  # into the empty slot; the idle one is emptied to make room
        assert b.reason == "length" and b.stats.cached_tokens == 0
        assert sorted(w.runtime.seq_past(s) == 0 for s in range(2)) == [False, True]
        _, again = _tokens(w.submit(first))
        assert again.stats.cached_tokens >= a.stats.prompt_tokens - 1  # restored from the state cache
    finally:
        w.close()


def _first_delta(gen):
    """Iterate `gen` until its first text (the prompt is in its slot's cache then); the rest of it, to finish."""
    from engine.events import TextDelta

    it = iter(gen)
    for event in it:
        if isinstance(event, TextDelta):
            return it
    raise AssertionError("no text came")


def _ordered(order: list, name: str, gen) -> tuple[list[int], object]:
    """Collect `gen` and note in `order` when its first text and its end came (in the order they happened)."""
    from engine.events import TextDelta

    tokens, final = [], None
    for event in gen:
        if isinstance(event, TextDelta):
            if not tokens:
                order.append(f"{name} started")
            tokens.extend(event.tokens)
        else:
            final = event
    order.append(f"{name} ended")
    return tokens, final


def test_a_request_that_needs_room_waits_for_a_busy_slot_instead_of_failing(smollm2_path):
    from engine.slots import SlotWorker

    w = SlotWorker(load(smollm2_path, n_ctx=512, slots=2), options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        busy = GenerationRequest(prompt="Lighthouse keepers log the weather. " * 55, sampling=GREEDY,
                                 max_tokens=100, ignore_eos=True)  # ~330 prompt tokens, then 100 more
        late = GenerationRequest(prompt="Bees visit flowers all day long. " * 30, sampling=GREEDY, max_tokens=8)
        order: list[str] = []
        rest = _first_delta(w.submit(busy))
        order.append("busy started")
        gen = w.submit(late)  # ~200 tokens and its reply do not fit beside the busy slot's: it waits
        results = {}
        t = threading.Thread(target=lambda: results.setdefault("late", _ordered(order, "late", gen)))
        t.start()
        for _ in rest:
            pass
        order.append("busy ended")
        t.join(120)
        tokens, final = results["late"]
        assert final.reason == "length" and final.error is None and len(tokens) == 8
        assert order.index("busy ended") < order.index("late started")  # it began once the busy slot was done
        assert final.stats.queued_ms > 0  # its figures say it waited
    finally:
        w.close()


def test_a_request_waiting_for_room_can_be_cancelled(smollm2_path):
    from engine.slots import SlotWorker

    w = SlotWorker(load(smollm2_path, n_ctx=512, slots=2), options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        rest = _first_delta(w.submit(GenerationRequest(prompt="Lighthouse keepers log the weather. " * 55,
                                                       sampling=GREEDY, max_tokens=150, ignore_eos=True)))
        waiting = w.submit(GenerationRequest(prompt="Bees visit flowers all day long. " * 30, sampling=GREEDY,
                                             max_tokens=8))
        waiting.cancel()
        tokens, final = _tokens(waiting)
        assert final.reason == "cancelled" and tokens == []
        busy = [e for e in rest]
        assert busy[-1].reason == "length" and busy[-1].stats.completion_tokens == 150  # untouched
    finally:
        w.close()


def test_a_long_system_prompt_in_a_busy_slot_is_shared_not_computed_again(smollm2_path):
    from engine.engine import Engine
    from engine.slots import SlotWorker
    from conftest import assert_same_up_to_near_tie, reference_greedy

    system = {"role": "system", "content": "You keep the Eddystone light. Log the weather every hour. " * 30}
    first = GenerationRequest(messages=[system, {"role": "user", "content": "Write the night's log."}],
                              sampling=GREEDY, max_tokens=80, ignore_eos=True)
    second = GenerationRequest(messages=[system, {"role": "user", "content": "What is 12 times 12?"}],
                               sampling=GREEDY, max_tokens=16)
    solo = Engine(load(smollm2_path, n_ctx=2048), options=EngineOptions(prompt_lookup=False))
    prompt = solo._prompt_tokens(second)[0]
    shared_part = solo._shared_end(*_split_for_shared_end(solo, second))
    reference, gaps = reference_greedy(solo.runtime, prompt, 16)
    solo.close()
    assert shared_part > 256  # (engine/slots.py shares prefixes of 256 tokens and more)

    w = SlotWorker(load(smollm2_path, n_ctx=2048, slots=2), options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        rest = _first_delta(w.submit(first))  # slot 0 holds the system prompt and is busy
        tokens, final = _tokens(w.submit(second))  # slot 1 starts from slot 0's cells
        assert final.stats.cached_tokens >= shared_part  # the system prompt was not computed again
        assert_same_up_to_near_tie(reference, gaps, tokens, ends=w.runtime.special.end_of_turn)
        for _ in rest:
            pass
    finally:
        w.close()


def _split_for_shared_end(engine, request):
    """The arguments Engine._shared_end takes for `request` (where its system part ends)."""
    from chat_format.chat_template import parse_messages
    from engine.reply_plan import plan_reply

    plan = plan_reply(request, parse_messages(request.messages), engine.style)
    parts, add_bos = engine._render(plan.messages, tools=plan.tools, options=plan.options)
    return plan.messages, parts, add_bos, engine.tokenize_reusing(parts, add_bos=add_bos)


def test_the_windows_request_goes_before_the_endpoints_queued_ones(smollm2_path):
    from engine.slots import SlotWorker

    w = SlotWorker(load(smollm2_path, n_ctx=1024, slots=1), options=EngineOptions(prompt_lookup=False))
    try:
        w.wait_ready(120)
        rest = _first_delta(w.submit(_request(QUESTIONS[1], max_tokens=60, ignore_eos=True)))
        batch = w.submit(_request(QUESTIONS[0], max_tokens=4))  # queued first, from the endpoint
        window = w.submit(_request(QUESTIONS[2], max_tokens=4, priority=1))  # then the window's chat
        order: list[str] = []
        threads = [threading.Thread(target=_ordered, args=(order, name, gen))
                   for name, gen in (("batch", batch), ("window", window))]
        for t in threads:
            t.start()
        for _ in rest:
            pass
        for t in threads:
            t.join(120)
        assert order.index("window ended") < order.index("batch started")
    finally:
        w.close()


def test_json_replies_in_two_slots_at_once_each_follow_their_own_schema(slots):
    import json

    import jsonschema

    person = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    city = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                             "sunny": {"type": "boolean"}},
            "required": ["city", "sunny"], "additionalProperties": False}
    w = slots(2)
    w.scheduler.keep_steps = True
    gens = [w.submit(GenerationRequest(messages=[{"role": "user", "content": ask}], json_schema=schema,
                                       sampling=GREEDY, max_tokens=60))
            for ask, schema in (("A person as JSON.", person), ("The weather in Paris as JSON.", city))]
    results = {}
    threads = [threading.Thread(target=lambda i=i, g=g: results.setdefault(i, g.text())) for i, g in enumerate(gens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, schema in enumerate((person, city)):  # each slot kept its own grammar's masks
        text, final = results[i]
        assert final.reason == "stop" and final.stats.mask_ms > 0, final
        jsonschema.validate(json.loads(text), schema)
    assert max(len(step) for step in w.scheduler.steps) == 2  # they were computed side by side


def test_a_seeded_reply_beside_another_conversation_is_its_solo_reply_up_to_close_draws(slots, smollm2_path):
    """The rule (engine/slots.py): a seeded reply draws the same number at each position alone or beside others,
    so it is its solo reply, except where a batch's slightly different logits move a token's boundary across the
    draw: the runs may part only at a draw that lay within a few percent of the probability mass of a boundary."""
    from engine.engine import Engine

    params = SamplingParams(temperature=0.8, seed=11)
    seeded = GenerationRequest(messages=[{"role": "user", "content": QUESTIONS[1]}], max_tokens=24, sampling=params)
    solo = Engine(load(smollm2_path, n_ctx=2048), options=EngineOptions(prompt_lookup=False))
    prompt = solo._prompt_tokens(seeded)[0]
    alone = _tokens(solo.generate(seeded))[0]
    margins = _draw_margins(solo.runtime, prompt, alone, params)
    solo.close()
    w = slots(2)
    w.scheduler.keep_steps = True
    talker = _first_delta(w.submit(_request(QUESTIONS[0], max_tokens=60, ignore_eos=True)))
    beside, final = _tokens(w.submit(seeded))
    for _ in talker:
        pass
    assert max(len(step) for step in w.scheduler.steps) == 2  # its tokens were computed beside the other's
    part = next((i for i, (a, b) in enumerate(zip(alone, beside)) if a != b), None)
    if part is None:
        assert beside == alone
    else:
        assert margins[part] < 0.08, (part, margins[part])  # a close draw, never a different stream of numbers


def _draw_margins(runtime, prompt: list[int], tokens: list[int], params) -> list[float]:
    """For each token of a seeded solo reply: how far its draw lay from the nearest token boundary (probability)."""
    import numpy as np

    from engine.sampling import _filtered_probs

    runtime.reset()
    logits = runtime.forward(prompt, 0)[0]
    context, margins = list(prompt), []
    for t in tokens:
        ids, probs = _filtered_probs(logits, params)
        cum = np.cumsum(probs) / probs.sum()
        u = np.random.default_rng([params.seed, len(context)]).random()  # as engine/sampling.py draws
        j = int(np.searchsorted(cum, u))
        assert int(ids[j]) == t  # the same draw as the reply's
        margins.append(float(min(u - (cum[j - 1] if j else 0.0), cum[j] - u)))
        context.append(t)
        logits = runtime.forward([t], runtime.n_past)[0]
    return margins


def test_lantern_chooses_four_slots_where_the_model_batches_and_one_where_it_cannot(smollm2_path, smollm2_mlx_path):
    from app.wiring import AUTO, start_worker
    from runtimes.runtime import LoadOptions
    from engine.slots import SlotWorker
    from engine.worker import EngineWorker

    chosen = start_worker(str(smollm2_path), options=LoadOptions(n_ctx=1024, slots=AUTO))
    try:
        early = chosen.submit(_request(QUESTIONS[2], max_tokens=4))  # before the choice: it waits, then runs
        counted = chosen.call(lambda e: e.runtime.n_ctx)
        tokens, final = _tokens(early)
        assert final.reason in ("stop", "length") and tokens and counted.result(60) == 1024
        assert isinstance(chosen.inner, SlotWorker) and chosen.inner.runtime.slots == 4
    finally:
        chosen.close()
    mlx = start_worker(str(smollm2_mlx_path), backend="mlx", options=LoadOptions(n_ctx=1024, slots=AUTO))
    try:
        text, final = mlx.submit(_request(QUESTIONS[2], max_tokens=4)).text()
        assert final.reason in ("stop", "length") and isinstance(mlx.inner, EngineWorker)  # one at a time there
    finally:
        mlx.close()


@pytest.mark.parametrize("lookup", [False, True], ids=["plain", "prompt lookup"])
def test_a_reply_that_grows_takes_room_from_idle_slots_and_ends_with_length_at_the_contexts_end(smollm2_path,
                                                                                                lookup):
    """Issue 32's reproduction: a 256-token context on 4 slots, four short replies left cached, then one reply asked
    for 1000 tokens. Room was taken from idle slots only when a request was admitted, so the reply failed ("1 more
    tokens do not fit"); it takes room as it grows now, and ends with "length" only when the context is full."""
    from engine.slots import SlotWorker

    w = SlotWorker(load(smollm2_path, n_ctx=256, slots=4), options=EngineOptions(prompt_lookup=lookup))
    try:
        w.wait_ready(120)
        gens = [w.submit(_request(q, max_tokens=12)) for q in QUESTIONS]  # at once: one slot each
        for gen in gens:
            _, final = _tokens(gen)
            assert final.reason in ("stop", "length") and final.error is None
        assert sum(1 for s in range(4) if w.runtime.seq_past(s)) >= 2  # conversations left cached in idle slots
        request = GenerationRequest(prompt="Once upon a time", sampling=GREEDY, max_tokens=1000, ignore_eos=True)
        tokens, final = _tokens(w.submit(request))
        assert final.error is None and final.reason == "length"
        # the whole context, short of at most one draft: the other slots' cells were given back
        assert final.stats.prompt_tokens + final.stats.completion_tokens >= 256 - 17
        assert len(tokens) == final.stats.completion_tokens
    finally:
        w.close()
