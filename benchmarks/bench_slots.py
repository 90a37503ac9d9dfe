"""Several conversations at once (continuous batching): aggregate decode speed and each client's time to first token
with 1, 2 and 4 concurrent requests, each in its own slot of one model, against the same requests one at a time.

    .venv/bin/python benchmarks/bench_slots.py [--models NAME,...] [--tokens N] [--mlx-tokens N] [--no-write]

Runs engine.slots.SlotWorker directly (as the endpoint and the window do, without HTTP), greedy, prompt lookup off
(plain decoding: what batching alone gives), every request a different question and `--tokens` long (ignore_eos).
Aggregate speed: all reply tokens over the wall time from the first submit to the last token. Beside it, the ceiling:
llama.cpp's own decode of n rows (forward_seqs alone, one token per slot, median of 20 steps), as n times one row's
step time over n rows'. The starter converted to MLX runs the same requests, shorter (`--mlx-tokens`; 0: not at all).
Writes its section of docs/benchmarks.md; benchmarks/bench_slots_servers.py measures through the endpoint against
llama.cpp's server and llama-cpp-python's.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402

QUESTIONS = ["Tell me about lighthouses.", "Write a story about a fox.", "Explain how rain forms.",
             "Describe a busy market.", "What do bees do all day?", "Tell me about the moon.",
             "Write a letter to a friend.", "Describe a winter morning."]


def run(worker, n: int, tokens: int, questions=QUESTIONS) -> tuple[float, list[float]]:
    from engine.events import GenerationRequest, TextDelta
    from engine.sampling import SamplingParams

    firsts: list[float] = [0.0] * n
    counts = [0] * n
    t0 = time.perf_counter()

    def client(i: int, gen) -> None:
        for event in gen:
            if isinstance(event, TextDelta):
                if not counts[i]:
                    firsts[i] = time.perf_counter() - t0
                counts[i] += len(event.tokens)

    gens = [worker.submit(GenerationRequest(messages=[{"role": "user", "content": questions[i]}],
                                            sampling=SamplingParams(temperature=0), max_tokens=tokens,
                                            ignore_eos=True)) for i in range(n)]
    threads = [threading.Thread(target=client, args=(i, g)) for i, g in enumerate(gens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0), firsts


def raw_steps(runtime, counts=(1, 2, 4), steps: int = 20) -> dict[int, float]:
    """Seconds a step of llama.cpp's own decode takes for n rows, one token per sequence, each after a short prompt."""
    out = {}
    for n in counts:
        for s in range(n):
            runtime.clear_seq(s)
        runtime.forward_seqs([(s, runtime.tokenize(q, add_bos=True), None) for s, q in enumerate(QUESTIONS[:n])])
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            runtime.forward_seqs([(s, [42], None) for s in range(n)])
            times.append(time.perf_counter() - t0)
        out[n] = statistics.median(times)
    runtime.clear_seq(0)
    t0 = time.perf_counter()
    runtime.forward_seqs([(0, [42] * runtime.n_batch, None)])  # one prefill chunk: the TTFT target's allowance
    out["chunk"] = time.perf_counter() - t0
    return out


def _on_a_thread(fn):
    """`fn()` on a thread that ends with it. With an OpenMP build of llama.cpp a live thread that has computed keeps
    its OpenMP team, and two teams on a 2-core machine make every later decode on the workers' threads ~3x slower
    (libgomp's barriers stop spinning once its threads outnumber the cores; scripts/setup builds without OpenMP)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # its thread ends when the pool shuts down
        return pool.submit(fn).result()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="gemma3-270m,smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--mlx-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the median run is reported")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from engine.engine import EngineOptions
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions
    from engine.slots import SlotWorker
    from models.library import resolve_model

    rows, chunk_times = [], []
    runs = [(name, "llamacpp", args.tokens) for name in args.models.split(",")]
    if args.mlx_tokens:
        runs.append(("smollm2-135m-instruct", "mlx", args.mlx_tokens))
    for name, backend, tokens in runs:
        path = resolve_model(name)
        if backend == "mlx":
            import tempfile

            from runtimes.mlx_runtime import MlxRuntime
            from models.convert import convert_gguf_to_mlx

            path = convert_gguf_to_mlx(path, Path(tempfile.mkdtemp(prefix="lantern-bench-")) / "mlx")
            make = lambda n: MlxRuntime(path, LoadOptions(n_ctx=4096, slots=n))  # noqa: E731
        else:
            make = lambda n: LlamaCppRuntime(path, LoadOptions(n_ctx=4096, slots=n))  # noqa: E731
        raw_rt = make(4)
        raw = _on_a_thread(lambda: raw_steps(raw_rt, steps=20 if backend == "llamacpp" else 5))
        raw_rt.close()
        chunk_times.append(f"{name}{' on MLX' if backend == 'mlx' else ''} {raw['chunk'] * 1000:.0f} ms for "
                           f"{raw_rt.n_batch} tokens")
        workers = {}
        for n in (1, 2, 4):  # all loaded at once, so the runs interleave (this machine's speed drifts)
            workers[n] = SlotWorker(make(n), options=EngineOptions(prompt_lookup=False))
            workers[n].wait_ready(120)
            run(workers[n], n, 4, [f"Say the number {i}." for i in range(n)])  # warm-up; measured prompts are cold
        results: dict[int, list] = {n: [] for n in workers}
        for r in range(args.repeats):  # a run is a second or two: one hiccup moves it, so the median of several
            for n, worker in workers.items():  # (each round's questions are new to the cache, as in real use)
                results[n].append(run(worker, n, tokens, [f"Request {r + 1}. {q}" for q in QUESTIONS]))
        for worker in workers.values():
            worker.close()
        solo_speed = solo_first = None
        for n in (1, 2, 4):
            speed, firsts = sorted(results[n], key=lambda result: result[0])[args.repeats // 2]
            if n == 1:
                solo_speed, solo_first = speed, firsts[0]
            rows.append((name if backend == "llamacpp" else f"{name} (MLX, {tokens} tokens)", f"{n}", f"{speed:.1f}",
                         f"{speed / solo_speed:.2f}x", f"{n * raw[1] / raw[n]:.2f}x ({raw[n] * 1000:.1f} ms)",
                         f"{statistics.median(firsts) * 1000:.0f}", f"{max(firsts) * 1000:.0f}",
                         f"{max(firsts) / solo_first:.2f}",
                         "yes" if max(firsts) <= 2 * solo_first + raw["chunk"] else "no"))
            print(rows[-1], flush=True)
    chunks = ", ".join(chunk_times)
    body = (f"## Several conversations at once (continuous batching)\n\nMachine: {machine()}. Command: "
            f"`.venv/bin/python benchmarks/bench_slots.py --tokens {args.tokens} --mlx-tokens {args.mlx_tokens} "
            f"--repeats {args.repeats}`. Date: {datetime.date.today()}.\n\n"
            f"n concurrent greedy requests of {args.tokens} tokens each, one slot each, on engine.slots.SlotWorker "
            f"(n_ctx 4096 shared by the slots, prompt lookup off), the run of median speed of {args.repeats} "
            "(in rounds: 1, 2 and 4 clients in turn; each round's questions new to the cache):\n\n"
            + markdown_table(("model", "clients", "aggregate tok/s", "vs 1 client",
                              "ceiling: the runtime's own n-row step", "TTFT median (ms)", "TTFT worst (ms)",
                              "worst TTFT / solo", "worst TTFT within 2 x solo + 1 chunk"), rows)
            + "\n\nThe ceiling column is what batching can give at all on this machine: n times one row's step time over "
            "an n-row step's, the runtime alone (no scheduler, no Python between steps). On this 2-core CPU a row "
            "costs llama.cpp nearly as much in a batch as alone, and the `mlx[cpu]` wheel computes a batch's rows "
            "one after another (its 4-row step costs about 4 times one row's). Targets (issue 20) on this CPU: at 4 "
            "clients at least 1.8x one client's aggregate on Gemma, and no client's TTFT above twice its solo value "
            f"plus one prefill chunk (its time measured here: {chunks}).\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "slots", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
