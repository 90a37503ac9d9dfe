"""Decode beside busy programs: llama.cpp's threads fixed at 1, fixed at every core, or following the load.

    .venv/bin/python benchmarks/bench_busy_cpu.py [--tokens N] [--repeats N] [--no-write]

Each row loads the model, reads a short prompt, then decodes one token a step (prompt lookup has nothing to do
with it) while 0, 1 or 2 processes spin beside it (`while True: pass`, not niced: a compile, a browser tab).
"auto" is Lantern's default (machine/threads.py): the cores other programs leave free, sampled twice a second.
Writes the "Decode beside busy programs" section of docs/benchmarks.md.
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

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.llama_library import default_threads  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402
from models.library import resolve_model  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
NOTES = """Without OpenMP (Lantern's build), llama.cpp's threads meet at barriers that spin without yielding: a thread
whose core another program holds makes the others spin through that program's time slice, at every barrier.
With every core's thread fixed, two busy programs on a 2-core machine cut decode by an order of magnitude; "auto"
drops to the threads the free cores carry (the seeded replies stay the same: the logits are the same bits at
any count, tests/test_threads.py). The first half second of each auto row runs at the full count: it has not
sampled the load yet.
"""


def decode_rate(model: str, threads: int | None, busy: int, tokens: int) -> tuple[float, int]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        rt = LlamaCppRuntime(resolve_model(model), LoadOptions(n_ctx=2048, n_threads=threads))
        try:
            prompt = rt.tokenize("Write a short story about a lighthouse keeper and a storm.", add_bos=True)
            rt.forward(prompt, 0)
            t0 = time.perf_counter()
            for i in range(tokens):
                rt.forward([prompt[i % len(prompt)]], rt.n_past)
            return tokens / (time.perf_counter() - t0), rt.threads_in_use
        finally:
            rt.close()
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    most = default_threads()
    ways = [("1 thread", 1), (f"{most} threads (every core)", most), ("auto (Lantern)", None)]
    rows = []
    for model in MODELS:
        for busy in (0, 1, 2):
            rates = {}
            for label, threads in ways:
                runs = [decode_rate(model, threads, busy, args.tokens) for _ in range(args.repeats)]
                rates[label] = (statistics.median(r for r, _ in runs), runs[-1][1])
            best = max(r for r, _ in rates.values())
            auto, used = rates["auto (Lantern)"]
            rows.append((model, str(busy), *(f"{rates[label][0]:.1f}" for label, _ in ways), str(used),
                         f"{auto / best:.2f}"))
            print(rows[-1], flush=True)
    header = ("model", "busy programs", *(f"{label} tok/s" for label, _ in ways), "auto's threads at the end",
              "auto / best")
    table = markdown_table(header, rows)
    print(table)
    if not args.no_write:
        body = (f"## Decode beside busy programs\n\nMachine: {machine()}  \nModels: SmolLM2-135M-Instruct (Q4_1), "
                f"Gemma 3 270M (Q4_K_M); {args.tokens} tokens decoded one a step, median of {args.repeats} loads  \n"
                f"Command: `.venv/bin/python benchmarks/bench_busy_cpu.py --tokens {args.tokens} --repeats "
                f"{args.repeats}`  \nDate: {datetime.date.today()}\n\n{table}\n\n{NOTES}")
        write_section(ROOT / "docs" / "benchmarks.md", "bench_busy_cpu", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
