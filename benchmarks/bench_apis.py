"""What the Messages and Responses APIs add to the time to first token, against chat completions, on one server.

    .venv/bin/python benchmarks/bench_apis.py [--repeats N] [--no-write]

One Lantern server (the starter model, greedy, 8-token replies) answers the same conversation through each API
in turn, streamed, with the official clients (openai for chat completions and responses, anthropic for messages).
Each request's overhead is the client's time to its first text delta minus the engine's own time to first token
(the server's on_finished figures), so the model's work cancels out; the table gives the median per API and what
it adds over chat completions. Writes docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.doc import machine, write_section  # noqa: E402

MODEL = "smollm2-135m-instruct"
SYSTEM = "You are a friendly travel guide."
ASK = "Which three cities in Portugal should I visit first?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    import anthropic
    import openai

    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService, default_opener
    from runtimes.runtime import LoadOptions

    engine_ttft: list[float] = []
    service = ModelService(MODEL, models=lambda: [MODEL], open_worker=default_opener(options=LoadOptions(n_ctx=2048)))
    server = LanternServer(service, ServerSettings(port=0, on_finished=lambda f: engine_ttft.append(
        f["stats"].ttft_ms))).start()
    root = server.base_url.removesuffix("/v1")
    oa = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=5, timeout=120)
    an = anthropic.Anthropic(base_url=root, api_key="x", max_retries=5, timeout=120)

    def chat() -> float:
        t0 = time.perf_counter()
        for chunk in oa.chat.completions.create(model=MODEL, stream=True, max_tokens=8, temperature=0, messages=[
                {"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}]):
            if chunk.choices and chunk.choices[0].delta.content:
                return time.perf_counter() - t0
        return float("nan")

    def messages() -> float:
        t0 = time.perf_counter()
        with an.messages.stream(model=MODEL, max_tokens=8, system=SYSTEM, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": ASK}]) as stream:
            for _ in stream.text_stream:
                return time.perf_counter() - t0
        return float("nan")

    def responses() -> float:
        t0 = time.perf_counter()
        for event in oa.responses.create(model=MODEL, stream=True, max_output_tokens=8, temperature=0,
                                         instructions=SYSTEM, input=ASK):
            if event.type == "response.output_text.delta":
                return time.perf_counter() - t0
        return float("nan")

    apis = {"chat completions": chat, "messages": messages, "responses": responses}
    overhead: dict[str, list[float]] = {name: [] for name in apis}
    try:
        for fn in apis.values():  # warm: the model loads, the prompt is cached, the clients connect
            fn()
        time.sleep(0.2)
        for _ in range(args.repeats):
            for name, fn in apis.items():  # interleaved: a busy moment of the machine hits each API alike
                before = len(engine_ttft)
                client_s = fn()
                deadline = time.monotonic() + 10
                while len(engine_ttft) == before and time.monotonic() < deadline:
                    time.sleep(0.001)  # the figures arrive when the reply ends
                overhead[name].append(client_s * 1000 - engine_ttft[-1])
    finally:
        server.stop()
    base = statistics.median(overhead["chat completions"])
    rows = []
    for name, values in overhead.items():
        median = statistics.median(values)
        added = "" if name == "chat completions" else f"{median - base:+.2f} ms"
        rows.append((name, f"{median:.2f} ms", f"{statistics.quantiles(values, n=10)[-1]:.2f} ms", added,
                     "" if name == "chat completions" else "< 5 ms"))
    table = ("| API (streamed) | client TTFT − engine TTFT, median | p90 | added over chat completions | target |\n"
             "|---|---|---|---|---|\n" + "".join(f"| {' | '.join(r)} |\n" for r in rows))
    print(table)
    if not args.no_write:
        body = (f"## The Messages and Responses APIs' cost\n\nMachine: {machine()}. Model: SmolLM2-135M-Instruct Q4_1 "
                f"(the starter), greedy, 8-token replies, the same cached conversation each time.\nCommand: "
                f"`.venv/bin/python benchmarks/bench_apis.py --repeats {args.repeats}`. Date: {datetime.date.today()}."
                f"\n\n{table}\nEach request's overhead is the official client's time to its first text delta minus "
                "the engine's own time to first token for that request (from the server's figures), so the model's "
                "work cancels out; the APIs run interleaved, one request at a time.\n")
        write_section(ROOT / "docs" / "benchmarks.md", "apis", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
