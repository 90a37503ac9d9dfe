"""Prompt lookup after a load measured on a busy machine: does the first reply get its speed-up back?

    .venv/bin/python benchmarks/bench_busy_load.py [--repeats N] [--no-write]

The copy workload of `lantern bench` (Gemma 3 270M repeating a file). Each engine loads, and so measures its
forward-pass costs, either on an idle machine or while two busy processes run (they stop before the reply);
"frozen" keeps the busy measurement as it was (the policy before costs were learnt from the passes run).
Writes the "Prompt lookup after a busy load" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.lookup import run_lantern  # noqa: E402
from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402
from engine import draft_policy  # noqa: E402
from engine.engine import Engine, EngineOptions  # noqa: E402
from runtimes.llamacpp import LlamaCppRuntime  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402
from models.library import resolve_model  # noqa: E402

MODEL, MAX_TOKENS = "gemma3-270m", 300
NOTES = """Busy: two processes spinning beside the load (they stop before the reply); the busy measurements come out
anywhere from cheap to dear (the cost ratio column). Learnt: every pass run corrects the cost estimate of its size
(engine/draft_policy.py). In every row the plain steps also check the draft not sent (free acceptance
evidence), which is what starts drafting early in the reply; with frozen costs the policy still recovers here
because the evidence outweighs a busy measurement of this size, and learning keeps a worse one from sticking
(tests/test_prompt_lookup.py drives the policy with a busy curve 3x too steep).
"""


def load(busy: bool, *, frozen: bool = False) -> tuple[Engine, dict]:
    draft_policy._measured.clear()  # measure anew, now
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)] if busy else []
    try:
        time.sleep(0.5 if busy else 0)
        rt = LlamaCppRuntime(resolve_model(MODEL), LoadOptions(n_ctx=4096))
        costs = dict(draft_policy.measure_forward_costs(rt))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    options = EngineOptions(forward_costs=costs) if frozen else EngineOptions()
    return Engine(rt, options=options), costs


def first_reply(engine: Engine, lookup: bool):
    (text, ids, stats, _), = run_lantern(engine, "copy", MAX_TOKENS, lookup=lookup)
    return stats


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for label, busy, frozen in (("idle load", False, False), ("busy load, costs learnt", True, False),
                                ("busy load, costs frozen (before)", True, True)):
        plain, fast, ratios = [], [], []
        for _ in range(args.repeats):
            engine, costs = load(busy, frozen=frozen)
            curve = draft_policy.DraftLengthPolicy(costs, draft_max=16)
            ratios.append(curve.cost(17) / curve.cost(1))
            plain.append(first_reply(engine, lookup=False).decode_tokens_per_s)
            engine.close()
            engine, _ = load(busy, frozen=frozen)  # a fresh load again: the reply with lookup is its first
            s = first_reply(engine, lookup=True)
            fast.append((s.decode_tokens_per_s, s.drafted_tokens, s.accepted_tokens))
            engine.close()
        tps = statistics.median(f[0] for f in fast)
        rows.append((label, f"{statistics.median(ratios):.1f}", f"{statistics.median(plain):.1f}", f"{tps:.1f}",
                     f"{tps / statistics.median(plain):.2f}", f"{statistics.median(f[1] for f in fast):.0f}",
                     f"{statistics.median(f[2] for f in fast):.0f}"))
    header = ("load", "measured cost of 17 tokens / 1", "plain tok/s", "lookup tok/s", "speed-up", "drafted", "accepted")
    table = markdown_table(header, rows)
    print(table)
    if not args.no_write:
        body = (f"## Prompt lookup after a busy load\n\nMachine: {machine()}  \nModel: Gemma 3 270M (Q4_K_M), the copy "
                f"workload, greedy, {MAX_TOKENS} tokens, the first reply after each load  \nCommand: "
                f"`.venv/bin/python benchmarks/bench_busy_load.py --repeats {args.repeats}`  \nDate: "
                f"{datetime.date.today()}\n\n{table}\n\n{NOTES}")
        write_section(ROOT / "docs" / "benchmarks.md", "bench_busy_load", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
