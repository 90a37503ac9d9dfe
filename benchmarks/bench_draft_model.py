"""A draft model next to prompt lookup, under one policy: speed and acceptance by source, against plain decoding.

    .venv/bin/python benchmarks/bench_draft_model.py [--repeats N] [--workload copy|revision|open-ended] [--no-write]

The target is the starter (SmolLM2-135M-Instruct Q4_1). Its draft models: a copy of it requantized to Q4_0
(benchmarks/requantize.py: the same vocabulary, agreeing on most tokens, 0.79 of its size) and the starter itself
(every draft accepted: the upper bound of what drafting can give on this machine). Configurations: plain; prompt
lookup (the default); lookup with the Q4_0 draft model under the policy (what a user who picks "Draft with" gets);
and each draft model forced to draft 4 tokens every step (no policy), to show what drafting costs here. Workloads
as in `lantern bench` (benchmarks/lookup.py): a copy with a small change, a revision, open-ended questions; all
greedy, each reply checked against the plain one (equal up to a near tie). Runs are interleaved, medians of
`--repeats`. Prints a table and writes it into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402
from benchmarks.lookup import _compare, run_lantern  # noqa: E402
from benchmarks.requantize import requantized  # noqa: E402
from engine.draft_model import DraftModel  # noqa: E402
from engine.engine import Engine, EngineOptions  # noqa: E402
from models.library import resolve_model  # noqa: E402
from runtimes.llama_library import default_threads  # noqa: E402
from runtimes.llamacpp import LlamaCppRuntime  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402

STARTER = "smollm2-135m-instruct"
WORKLOADS = {"copy": 300, "revision": 200, "open-ended": 150}
FORCED = EngineOptions(prompt_lookup=False, adaptive_draft=False, draft_max=4)


def configurations(target: Path, q4_0: Path, threads: int) -> dict[str, tuple[Engine, bool]]:
    """name -> (engine, prompt lookup on), each with its own target runtime (and draft model)."""
    def runtime(path: Path) -> LlamaCppRuntime:
        return LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads))

    def with_draft(draft: Path, options: EngineOptions) -> Engine:
        model = runtime(target)
        return Engine(model, options=options, draft_model=DraftModel(runtime(draft), model))

    return {"plain": (Engine(runtime(target), options=EngineOptions(prompt_lookup=False)), False),
            "prompt lookup (default)": (Engine(runtime(target), options=EngineOptions()), True),
            "lookup + Q4_0 draft model, policy": (with_draft(q4_0, EngineOptions()), True),
            "Q4_0 draft model, forced 4": (with_draft(q4_0, FORCED), False),
            "itself as draft model, forced 4": (with_draft(target, FORCED), False)}


def benchmark(workloads, repeats: int) -> list[tuple[str, ...]]:
    threads = default_threads()
    target = resolve_model(STARTER)
    with tempfile.TemporaryDirectory() as tmp:
        q4_0 = requantized(target, Path(tmp) / "smollm2-q4_0.gguf")
        engines = configurations(target, q4_0, threads)
        rows = []
        for workload in workloads:
            runs = {name: [] for name in engines}
            for _ in range(repeats):  # interleaved: drifts of the machine hit every configuration alike
                for name, (engine, lookup) in engines.items():
                    runs[name].append(run_lantern(engine, workload, WORKLOADS[workload], lookup))
            plain_speed = _speed(runs["plain"])
            for name, reps in runs.items():
                same = "yes (reference)" if name == "plain" else _compare(engines["plain"][0].runtime,
                                                                          runs["plain"][0], reps[0])
                speed = _speed(reps)
                rows.append((workload, name, f"{speed:.1f}", f"{speed / plain_speed:.2f}", _by_source(reps), same))
                print(" | ".join(rows[-1]), flush=True)
        for engine, _ in engines.values():
            engine.close()
    return rows


def _speed(reps) -> float:
    return statistics.median(statistics.mean(r[2].decode_tokens_per_s for r in rep) for rep in reps)


def _by_source(reps) -> str:
    """'lookup 40/97, draft model 12/60' (accepted/drafted, over every repeat)."""
    totals: dict[str, list[int]] = {}
    for rep in reps:
        for r in rep:
            for source, (drafted, accepted) in r[2].drafts_by_source.items():
                both = totals.setdefault(source, [0, 0])
                both[0] += drafted
                both[1] += accepted
    return ", ".join(f"{s} {a}/{d} ({a / d:.0%})" for s, (d, a) in sorted(totals.items()) if d) or "none drafted"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workload", choices=list(WORKLOADS), action="append")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = benchmark(args.workload or list(WORKLOADS), args.repeats)
    header = ("workload", "configuration", "decode tok/s", "vs plain", "accepted/drafted by source",
              "reply equals plain greedy")
    command = "`.venv/bin/python benchmarks/bench_draft_model.py" + (f" --repeats {args.repeats}`")
    body = (f"## Draft models (speculative decoding beyond the conversation)\n\n"
            f"Machine: {machine()}  \nModel: {STARTER} (Q4_1); draft models: its Q4_0 copy, and itself  \n"
            f"Command: {command}  \nDate: {datetime.date.today().isoformat()}\n\n"
            f"{markdown_table(header, rows)}\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "draft-model", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
