"""One client on a model loaded with many slots, against the same model with one: what the slot machinery costs a
lone conversation (issue 31's target: within 5%).

    .venv/bin/python benchmarks/bench_lone_slot.py [--tokens N] [--repeats N] [--no-write]

Three workers of each model are loaded at once and run in turns (this machine's speed drifts): an EngineWorker
(slots=1, as `lantern serve --slots 1`) and SlotWorkers of 4 and 8 slots. One greedy request at a time, prompt lookup
off, `--tokens` long (ignore_eos); decode speed after the first token, the median of `--repeats` turns. Models: the
starter, and a random-weight Llama of 2 layers with Llama 3's 128k vocabulary (benchmarks/make_random_llama.py
"tiny"): its pass takes about a millisecond, as a 1B model's does on a GPU, so what the slots add per token shows
as it would there. One compute thread for the tiny model (two threads' barriers on 2 cores cost more than its pass).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402

PROMPT = "The history of the lighthouse begins"


def decode_speed(worker, tokens: int) -> float:
    from engine.events import GenerationRequest, TextDelta
    from engine.sampling import SamplingParams

    request = GenerationRequest(prompt=PROMPT, max_tokens=tokens, ignore_eos=True,
                                sampling=SamplingParams(temperature=0.0))
    first, n = None, 0
    for event in worker.submit(request):
        if isinstance(event, TextDelta) and event.tokens:
            first = first or time.perf_counter()
            n += len(event.tokens)
    return (n - 1) / (time.perf_counter() - first)


def tiny_model() -> Path:
    import subprocess

    from models.library import resolve_model

    folder = Path(tempfile.mkdtemp(prefix="lantern-bench-tiny-"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import make_random_llama

    tok = folder / "tok.json"
    make_random_llama.tokens_from_smollm2(str(resolve_model("smollm2-135m-instruct")), str(tok))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_random_llama.py"), str(tok), str(folder), "tiny"],
                   check=True, capture_output=True)
    return folder / "random-llama-tiny-Q4_0.gguf"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from app.wiring import start_worker
    from engine.engine import EngineOptions
    from runtimes.runtime import LoadOptions

    rows, figures = [], {}
    for name, path, threads in (("random Llama, 2 layers, 128k vocabulary", tiny_model(), 1),
                                ("smollm2-135m-instruct", "smollm2-135m-instruct", None)):
        workers = {}
        for slots in (1, 4, 8):
            workers[slots] = start_worker(str(path), options=LoadOptions(n_ctx=4096, slots=slots, n_threads=threads),
                                          engine_options=EngineOptions(prompt_lookup=False))
            workers[slots].wait_ready(120)
            decode_speed(workers[slots], 16)  # warm-up
        speeds = {slots: [] for slots in workers}
        for _ in range(args.repeats):
            for slots, worker in workers.items():
                speeds[slots].append(decode_speed(worker, args.tokens))
        for worker in workers.values():
            worker.close()
        one = statistics.median(speeds[1])
        for slots, runs in speeds.items():
            med = statistics.median(runs)
            rows.append((name, f"{slots}", f"{med:.1f}", f"{med / one:.3f}", f"{1000 / med:.3f}",
                         f"{min(runs):.0f}-{max(runs):.0f}"))
            print(rows[-1], flush=True)
        figures[name] = {s: statistics.median(r) for s, r in speeds.items()}
    body = (f"## One conversation on many slots\n\nMachine: {machine()}. Command: `.venv/bin/python "
            f"benchmarks/bench_lone_slot.py --tokens {args.tokens} --repeats {args.repeats}`. Date: "
            f"{datetime.date.today()}.\n\nOne greedy client at a time, {args.tokens} tokens, prompt lookup off, on a "
            "model loaded with 1 slot (EngineWorker) and with 4 and 8 (SlotWorker); the median of "
            f"{args.repeats} turns, the workers taking turns. The tiny random model's pass takes about a millisecond, "
            "as a 1B model's does on a GPU, so its rows show what the slots cost a lone client there too. Target "
            "(issue 31): within 5% of one slot.\n\n"
            + markdown_table(("model", "slots", "decode tok/s", "vs 1 slot", "ms a token", "range of the turns"),
                             rows) + "\n")
    print(body)
    print(json.dumps(figures))
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "lone-slot", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
