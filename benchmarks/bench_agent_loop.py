"""A five-round agent loop, as the window runs it: each round resends the growing chat, and with the engine's KV
reuse computes only the new call and result. Per round: the prompt's tokens, how many were new since the last
round, how many the model computed, and the time from the user's click (Allow) to the next round's first token.

    .venv/bin/python benchmarks/bench_agent_loop.py [--rounds 5] [--repeats 3] [--no-write]

The model is the starter (SmolLM2-135M-Instruct, its own template: Lantern's generic JSON tool calls), on its engine
thread as the window uses it, with one tool ("add", answered at once, so the figures are the model's); the model is
held to calling it for `--rounds` rounds, then to answering in text. The loop is app/tools/agent_loop.py itself.
Prints a table and writes it into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from app.tools.agent_loop import ALLOW_ONCE, AgentLoop, ToolBox  # noqa: E402
from app.tools.calls import ToolResult  # noqa: E402
from app.wiring import start_worker  # noqa: E402
from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402
from engine.events import GenerationRequest  # noqa: E402
from engine.sampling import SamplingParams  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402

STARTER = "smollm2-135m-instruct"
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}


class AddBox(ToolBox):
    """One tool, answered at once (the figures are the model's, not a tool's)."""

    def __init__(self):
        self._by_name = {"add": ("bench", "add", "Add two whole numbers.", ADD)}

    def run(self, server, tool, arguments):
        import concurrent.futures

        fut = concurrent.futures.Future()
        fut.set_result(ToolResult(str(arguments["a"] + arguments["b"])))
        return fut


def one_loop(worker, rounds: int) -> list[dict]:
    clicks: list[float] = []
    loop = AgentLoop(worker, AddBox(), approve=lambda call: clicks.append(time.monotonic()) or ALLOW_ONCE,
                     max_rounds=rounds + 1,
                     per_round=lambda i: {"tool_name": "add", "tool_choice": "required",
                                          "parallel_tool_calls": False} if i < rounds else {"tool_choice": "none"})
    request = GenerationRequest(messages=[{"role": "user", "content": "Add 1 and 2, then add 3 to the result, and "
                                           "so on: use the add tool for each step."}], max_tokens=64,
                                sampling=SamplingParams(temperature=0))
    done, _ = loop.run(request)
    out, previous = [], 0
    for r in done:
        click = clicks[r.index - 1] if 0 < r.index <= len(clicks) else None
        out.append({"round": r.index + 1, "prompt": r.prompt_tokens, "new": r.prompt_tokens - previous,
                    "computed": r.prefill_tokens, "click_ms": (r.started - click) * 1000 + r.ttft_ms if click else None,
                    "calls": len(r.calls)})
        previous = r.prompt_tokens
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    worker = start_worker(STARTER, options=LoadOptions(n_ctx=4096, slots=1))
    try:
        worker.wait_ready(timeout=300)
        runs = [one_loop(worker, args.rounds) for _ in range(args.repeats)]
    finally:
        worker.close()
    rows = []
    for i, first in enumerate(runs[0]):
        clicks = [r[i]["click_ms"] for r in runs if len(r) > i and r[i]["click_ms"] is not None]
        rows.append((str(first["round"]), "call" if first["calls"] else "answer", f"{first['prompt']:,}",
                     f"{first['new']:,}", f"{statistics.median(r[i]['computed'] for r in runs if len(r) > i):,.0f}",
                     f"{statistics.median(clicks):.0f}" if clicks else "(the user's message)"))
    header = ("round", "the model wrote", "prompt tokens", "new since the last round", "computed (median)",
              "click → first token, ms (median)")
    body = (f"## The agent loop (tools in the window)\n\n"
            f"Machine: {machine()}  \nModel: {STARTER} (Q4_1), generic JSON tool calls; one tool answered at once  \n"
            f"Command: `.venv/bin/python benchmarks/bench_agent_loop.py --rounds {args.rounds} --repeats "
            f"{args.repeats}`  \nDate: {datetime.date.today().isoformat()}\n\n{markdown_table(header, rows)}\n\n"
            "Each round resends the whole chat; \"computed\" is what the model read anew (the rest came from its KV "
            "cache): the call as the template writes it back and the tool's answer, never the conversation again. "
            "The first round reads the user's message and the tool definitions (164 tokens in the first repeat; the "
            "later repeats find them in the cache: the median is 0).\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "agent-loop", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
