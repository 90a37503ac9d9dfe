"""What the defences against untrusted input cost: GGUF header checks, the first test load in a child process,
a remembered file, and a chat template rendered with and without its budget.

    .venv/bin/python benchmarks/bench_safety.py [--repeats N] [--no-write]

Writes the "Safety checks" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ["LANTERN_CACHE_DIR"] = tempfile.mkdtemp(prefix="lantern-bench-safety-")  # nothing remembered yet

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402


def model_costs(name: str, repeats: int) -> tuple[str, str, str, str]:
    from runtimes.load_probe import verify_in_child
    from runtimes.runtime import LoadOptions
    from files.gguf_check import read_checked_header
    from models.library import resolve_model

    path = resolve_model(name)
    header = statistics.median(timeit.repeat(lambda: read_checked_header(path), number=1, repeat=repeats))
    firsts = []
    for i in range(repeats):
        options = LoadOptions(n_ctx=512 + i)  # other options: a file not loaded with them before
        t = time.perf_counter()
        verify_in_child(path, options)
        firsts.append(time.perf_counter() - t)
    remembered = statistics.median(timeit.repeat(lambda: verify_in_child(path, LoadOptions(n_ctx=512)), number=1,
                                                 repeat=repeats))
    return name, f"{header * 1000:.1f} ms", f"{statistics.median(firsts):.2f} s", f"{remembered * 1000:.2f} ms"


def template_costs(repeats: int) -> tuple[str, str, str]:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from chat_format.chat_template import ChatTemplate, Message
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions
    from models.library import resolve_model

    rt = LlamaCppRuntime(resolve_model("smollm2-135m-instruct"), LoadOptions(n_ctx=512))
    source = rt.chat_template
    rt.close()
    messages = [Message("user" if i % 2 == 0 else "assistant", f"message {i} " * 40) for i in range(20)]
    data = [{"role": m.role, "content": m.content} for m in messages]
    budgeted = ChatTemplate(source)
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    n = 200
    b = min(timeit.repeat(lambda: budgeted.render(messages), number=n, repeat=repeats)) / n
    p = min(timeit.repeat(lambda: plain.render(messages=data, add_generation_prompt=True, bos_token="", eos_token=""),
                          number=n, repeat=repeats)) / n
    return "SmolLM2's template, 20 messages", f"{p * 1e6:.0f} µs", f"{b * 1e6:.0f} µs"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = [model_costs(name, args.repeats) for name in ("smollm2-135m-instruct", "gemma3-270m")]
    template = template_costs(args.repeats)
    table = (markdown_table(("model", "header checks", "first test load (child process)", "remembered file"), rows)
             + "\n\n" + markdown_table(("render", "plain sandbox", "with the budget (hooks and watchdog)"), [template]))
    print(table)
    if not args.no_write:
        body = (f"## Safety checks\n\nMachine: {machine()}  \nModels: the built-in SmolLM2 135M (Q4_1) and Gemma 3 270M "
                f"(Q4_K_M)  \nCommand: `.venv/bin/python benchmarks/bench_safety.py --repeats {args.repeats}`  \n"
                f"Date: {datetime.date.today()}\n\n{table}\n\nThe first test load runs once per file and load options "
                "(it is a real load, so it costs about what a load costs); later loads only look the file up.\n")
        write_section(ROOT / "docs" / "benchmarks.md", "bench_safety", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
