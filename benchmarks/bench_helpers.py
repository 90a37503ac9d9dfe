"""The cost of spreading a model over helper machines: the starter's prefill and decode speed alone, in the child
process a spread model runs in (the proxy's cost alone), and over one and two `lantern worker` helpers on loopback
(the RPC hops' cost: every pass crosses to each helper and back, here without a network's latency).

    .venv/bin/python benchmarks/bench_helpers.py [--repeats 3] [--tokens 128] [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.doc import machine, markdown_table, write_section

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
PROMPT_WORDS = 130  # about 400 tokens to prefill


def start_helper() -> tuple[str, subprocess.Popen]:
    from machine.helpers import HelperError, probe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--port", str(port), "--no-cache",
                             "--threads", "1"], cwd=ROOT, stdout=tempfile.TemporaryFile(), stderr=subprocess.STDOUT)
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            probe(endpoint)
            return endpoint, proc
        except HelperError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"lantern worker did not start at {endpoint}")
            time.sleep(0.2)


def open_engine(kind: str, helpers: tuple[str, ...]):
    from app.wiring import plan_load
    from engine.engine import Engine, EngineOptions
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions
    from runtimes.spread_runtime import SpreadRuntime

    # one thread for every part, here and on each helper: the helpers share this machine's cores, and a pass runs one
    # part after another, so the rows differ by the hops alone
    plan = plan_load(MODEL, options=LoadOptions(n_ctx=2048, slots=1, helpers=helpers, n_threads=1))
    runtime = LlamaCppRuntime(plan.path, plan.options) if kind == "here" else SpreadRuntime(plan.path, plan.options)
    return Engine(runtime, options=EngineOptions(prompt_lookup=False)), plan.reason


def one_turn(engine, n: int, tokens: int) -> tuple[float, float]:
    """(prefill tokens a second, decode tokens a second) of a fresh prompt of about 400 tokens."""
    from engine.events import Finished, GenerationRequest
    from engine.sampling import SamplingParams

    words = " ".join(f"w{(n * 7919 + i) % 1000}" for i in range(PROMPT_WORDS))  # new each turn: nothing cached
    request = GenerationRequest(messages=[{"role": "user", "content": f"Summarise: {words}"}], max_tokens=tokens,
                                sampling=SamplingParams(temperature=0.0), ignore_eos=True)
    final = [e for e in engine.generate(request) if isinstance(e, Finished)][-1]
    s = final.stats
    assert final.reason == "length" and s.prefill_tokens > 350, final  # the chat template's start is cached
    return s.prefill_tokens / (s.prefill_ms / 1000), s.decode_tokens_per_s


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--beside", default="", help="what else ran on the machine meanwhile (said with the table)")
    args = parser.parse_args()
    helpers = [start_helper(), start_helper()]
    rows, local = [], None
    try:
        for label, kind, used in (("this machine alone", "here", ()),
                                  ("this machine, model in a child process", "child", ()),
                                  ("this machine + 1 helper", "child", (helpers[0][0],)),
                                  ("this machine + 2 helpers", "child", (helpers[0][0], helpers[1][0]))):
            engine, reason = open_engine(kind, used)
            try:
                one_turn(engine, -1, 8)  # warm-up
                runs = [one_turn(engine, n, args.tokens) for n in range(args.repeats)]
            finally:
                engine.close()
            prefill = statistics.median(r[0] for r in runs)
            decode = statistics.median(r[1] for r in runs)
            local = local or (prefill, decode)
            hop = 1000 / decode - 1000 / local[1]
            rows.append((label, f"{prefill:.0f}", f"{decode:.1f}", f"{1000 / decode:.1f}",
                         f"{hop:+.1f}" if kind != "here" else "-",
                         reason.split(": ", 1)[-1] if used else "-"))
            print(rows[-1], flush=True)
    finally:
        for _, proc in helpers:
            proc.kill()
            proc.wait()
    table = markdown_table(("where the model runs", "prefill tok/s", "decode tok/s", "ms a token",
                            "ms a token vs alone", "layers"), rows)
    print(table)
    if not args.no_write:
        body = (f"## Helper machines (llama.cpp RPC)\n\nMachine: {machine()}. Model: {MODEL}. Command: "
                f"`.venv/bin/python benchmarks/bench_helpers.py --repeats {args.repeats} --tokens {args.tokens}`. "
                f"Date: {datetime.date.today()}.\n\nGreedy, prompt lookup off, a new ~400-token prompt each turn "
                f"(nothing cached), {args.tokens} tokens written; the median of {args.repeats} turns; one thread "
                "for each part. The helpers are `lantern worker` processes on this machine (loopback: no network "
                "latency, the same CPU cores shared), so the last column is what the proxy and the RPC hops cost a "
                "token, not what a LAN adds (each pass crosses to every helper and back: add twice the LAN's round "
                "trip per helper a token)."
                + (f" It ran beside {args.beside}." if args.beside else "") + "\n\n"
                + table + "\n")
        write_section(ROOT / "docs" / "benchmarks.md", "helpers", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
