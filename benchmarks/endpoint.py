"""The endpoint's cost, and Lantern's server against llama-cpp-python's on a 6-turn conversation.

    .venv/bin/lantern bench --server [--repeats N] [--no-write]   (or benchmarks/bench_server.py)

Streaming clients (the official openai package) measure time to first token and tokens per second
as a user's app sees them; Lantern's own figures for the same requests come from the server's
on_finished hook, so the server's cost is the difference.
"""
from __future__ import annotations

import datetime
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from app.server.api import ServerSettings
from app.server.run import LanternServer
from app.server.service import ModelService, default_opener
from benchmarks.doc import machine, write_section
from models.library import resolve_model
from models.registry import BUILTIN_MODELS
from runtimes.llama_library import default_threads
from runtimes.runtime import LoadOptions

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
N_TOKENS = 64
TURNS = [
    "I am planning a week-long trip to Portugal in the spring. I like old towns, good food, walking and the sea, "
    "and I do not want to drive. Which cities should I visit, and in what order?",
    "How many days would you spend in Lisbon, and what are the neighbourhoods worth walking through slowly?",
    "What should I eat in Porto that I cannot easily find elsewhere, and where would a local take me?",
    "Is a day trip from Lisbon to Sintra worth it, or should I stay one night there? Think about the crowds.",
    "Write me a short packing list for the trip: the weather, the walking and the trains in mind.",
    "Sum up the whole plan in a few lines I can keep on my phone.",
]


def _stream(client, model: str, messages: list[dict]) -> tuple[str, float, float, int]:
    """Text, client TTFT (ms), client decode tokens/s, completion tokens (usage when sent, else chunks)."""
    t0 = time.perf_counter()
    stamps, parts, usage = [], [], None
    for chunk in client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=N_TOKENS,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                stamps.append(time.perf_counter())
                parts.append(choice.delta.content)
    n = usage.completion_tokens if usage else len(stamps)
    ttft = (stamps[0] - t0) * 1000 if stamps else float("nan")
    decode = (n - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return "".join(parts), ttft, decode, n


def conversation(client, model: str, session: int) -> list[tuple[float, float]]:
    # A system prompt of its own per run: nothing any server cached before matches, on either side.
    messages = [{"role": "system", "content": f"You are a friendly travel guide (session {session})."}]
    rows = []
    for turn in TURNS:
        messages.append({"role": "user", "content": turn})
        text, ttft, decode, _ = _stream(client, model, messages)
        messages.append({"role": "assistant", "content": text})
        rows.append((ttft, decode))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer_server(threads: int):
    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.peer_server", "--model", str(resolve_model(MODEL)),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads",
                             str(threads), "--n_threads_batch", str(threads), "--model_alias", MODEL],
                            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama-cpp-python's server did not start")


def run(*, repeats: int = 3, write: bool = True, peers: bool = True) -> str:

    threads = default_threads()
    figures: list[dict] = []
    service = ModelService(MODEL, models=lambda: list(BUILTIN_MODELS),
                           open_worker=default_opener(options=LoadOptions(n_ctx=4096, n_threads=threads)))
    server = LanternServer(service, ServerSettings(port=0, on_finished=figures.append)).start()
    try:
        while service.status == "loading":
            time.sleep(0.05)
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        overhead, ratio, lantern_turns = [], [], []
        for _ in range(repeats):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
            for turn in TURNS[:3]:  # single requests: client figures against the engine's own
                figures.clear()
                _, ttft, decode, _ = _stream(client, MODEL, [{"role": "user", "content": turn}])
                s = figures[-1]["stats"]
                overhead.append(ttft - s.ttft_ms)
                ratio.append(decode / s.decode_tokens_per_s)
            lantern_turns.append(conversation(client, MODEL, len(lantern_turns)))
    finally:
        server.stop()
    peer_turns = []
    if peers:
        proc, url = _peer_server(threads)
        try:
            peer = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
            for _ in range(repeats):
                peer_turns.append(conversation(peer, MODEL, 100 + len(peer_turns)))
        finally:
            proc.terminate()
            proc.wait(30)
    text = table(overhead, ratio, lantern_turns, peer_turns)
    if write:
        header = (f"Machine: {machine()}  \nModel: {MODEL} (Q4_1), {threads} threads, n_ctx 4096, greedy, {N_TOKENS} "
                  f"tokens a reply, official openai client streaming  \nCommand: `.venv/bin/lantern bench --server "
                  f"--repeats {repeats}`  \nDate: {datetime.date.today().isoformat()}\n\n")
        write_section(ROOT / "docs" / "benchmarks.md", "server", "## The OpenAI-compatible endpoint\n\n" + header + text)
    return text


def table(overhead, ratio, lantern_turns, peer_turns) -> str:
    med = statistics.median
    lines = [f"Streaming client tokens/s over the engine's own: median {med(ratio):.3f} (min {min(ratio):.3f}; "
             f"target >= 0.95)  ",
             f"Time to first token added by the server: median {med(overhead):.1f} ms (max {max(overhead):.1f} ms; "
             f"target < 20 ms)\n",
             "| turn | Lantern TTFT ms | Lantern tok/s | llama-cpp-python server TTFT ms | its tok/s |",
             "|---|---|---|---|---|"]
    for i in range(len(TURNS)):
        lt = med(r[i][0] for r in lantern_turns)
        ld = med(r[i][1] for r in lantern_turns)
        pt = f"{med(r[i][0] for r in peer_turns):.0f}" if peer_turns else "-"
        pd = f"{med(r[i][1] for r in peer_turns):.1f}" if peer_turns else "-"
        lines.append(f"| {i + 1} | {lt:.0f} | {ld:.1f} | {pt} | {pd} |")
    lines.append("\nEach conversation starts with a system prompt of its own, so turn 1 is cold on both servers; "
                 "both then reuse their KV cache for the earlier turns. Medians over the runs.")
    return "\n".join(lines) + "\n"
