"""Prompt lookup beside other conversations: aggregate decode with lookup on and off at 1, 2, 4 and 8 slots, on a
reply that quotes its prompt (lookup's best case) and on open-ended stories (its worst: drafts rarely right).

    .venv/bin/python benchmarks/bench_slots_lookup.py [--model NAME] [--tokens N] [--no-write]

engine.slots.SlotWorker with n slots and n concurrent greedy requests, each different. With others decoding, the
draft policy counts a draft row at what another conversation's token would cost (engine/draft_policy.py): the
target is never to be slower than without drafting, at any slot count. Writes its section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402
from bench_slots import run  # noqa: E402

PARAGRAPHS = [
    "The keeper climbed the hundred steps at dusk, trimmed the wick, wound the clockwork and lit the lamp.",
    "Bees leave the hive at first light, visit a few hundred flowers and come back heavy with pollen.",
    "The market opens at six: fish on ice, bread still warm, oranges stacked in pyramids by the gate.",
    "Rain forms when warm air rises, cools and lets its water gather into drops around specks of dust.",
    "The fox waited by the wall until the farmer's lamp went out, then slipped under the gate at a run.",
    "Snow fell all night; by morning the road was gone and the village was quiet under a white sky.",
    "The letter was short: the harvest was good, the roof was mended and the dog had learnt a new trick.",
    "The moon rose over the bay, and the boats came in one by one with their lanterns swinging.",
]
STORIES = ["Tell me about lighthouses.", "Write a story about a fox.", "Explain how rain forms.",
           "Describe a busy market.", "What do bees do all day?", "Tell me about the moon.",
           "Write a letter to a friend.", "Describe a winter morning."]


def measure(worker, n: int, tokens: int, questions: list[str]) -> float:
    """Aggregate tokens/s over all the prompts, n at a time (each group starting once the one before has ended)."""
    produced = elapsed = 0.0
    for i in range(0, len(questions), n):
        t0 = time.perf_counter()
        speed, _firsts = run(worker, n, tokens, questions[i:] + questions[:i])
        dt = time.perf_counter() - t0
        produced, elapsed = produced + speed * dt, elapsed + dt
    return produced / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from engine.engine import EngineOptions
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions
    from engine.slots import SlotWorker
    from models.library import resolve_model

    # a reply that copies ~100 tokens of its prompt (the starter repeats a text once, not three times)
    quoting = [f"Copy this text exactly:\n\n{' '.join(PARAGRAPHS[i:] + PARAGRAPHS[:i])[:480]}"
               for i in range(len(PARAGRAPHS))]
    rows = []
    for n in (1, 2, 4, 8):
        for workload, questions in (("quoting", quoting), ("stories", STORIES)):
            # One worker each, loaded once, measured in turn: off, on, off, on... so a busy moment falls on both.
            # Every measurement runs all 8 prompts, n at a time, so each slot count sees the same texts.
            workers = {lookup: SlotWorker(LlamaCppRuntime(resolve_model(args.model), LoadOptions(n_ctx=8192, slots=n)),
                                          options=EngineOptions(prompt_lookup=lookup)) for lookup in (False, True)}
            for worker in workers.values():
                worker.wait_ready(120)
                measure(worker, n, args.tokens, questions)  # warm-up: the prompts are cached from here on
            runs = {False: [], True: []}
            work = {False: [], True: []}  # (passes, rows) of each run: what lookup changed, free of timing noise
            for _ in range(args.repeats):
                for lookup, worker in workers.items():
                    worker.scheduler.keep_steps = True
                    worker.scheduler.steps.clear()
                    runs[lookup].append(measure(worker, n, args.tokens, questions))
                    steps = worker.scheduler.steps
                    work[lookup].append((len(steps), sum(t for step in steps for _seq, t in step)))
            for worker in workers.values():
                worker.close()
            speed = {k: statistics.median(v) for k, v in runs.items()}
            paired = statistics.median(on / off for off, on in zip(runs[False], runs[True]))
            passes = {k: round(statistics.median(p for p, _r in v)) for k, v in work.items()}
            computed = {k: round(statistics.median(r for _p, r in v)) for k, v in work.items()}
            rows.append((f"{n}", workload, f"{speed[False]:.1f}", f"{speed[True]:.1f}", f"{paired:.2f}x",
                         f"{passes[False]} / {passes[True]}", f"{computed[False]} / {computed[True]}"))
            print(rows[-1], flush=True)
    body = (f"## Prompt lookup beside other conversations\n\nMachine: {machine()}. Command: "
            f"`.venv/bin/python benchmarks/bench_slots_lookup.py --tokens {args.tokens} --repeats {args.repeats}`. "
            "Date: "
            f"{datetime.date.today()}.\n\n{args.model}, n slots and n concurrent greedy requests of {args.tokens} "
            "tokens (ignore_eos), each different: replies that quote their prompt, and open-ended stories; each run "
            "sends all 8 prompts, n at a time, to a worker loaded once (prompts cached after a warm-up). Aggregate "
            f"decode tokens/s without and with prompt lookup, medians of {args.repeats} runs taken in turn, and the "
            "median of each pair's ratio; the draft policy weighs a draft row against another conversation's token "
            "(target: never below 1.00x):\n\n"
            + markdown_table(("slots", "replies", "lookup off tok/s", "lookup on tok/s", "on / off (paired)", "passes off / on",
                              "tokens computed off / on"), rows)
            + "\n\nPasses and tokens computed (prompts, replies and drafts, medians) are counts, not timings: where "
            "lookup drafted nothing they are equal, and any gap between the two speeds is this machine's noise.\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "slots-lookup", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
