"""Several clients at once through each server's OpenAI endpoint: Lantern (`lantern serve --slots 4`), llama.cpp's
server (`llama-server -np 4`, unified KV) and llama-cpp-python's server, in one run.

    .venv/bin/python benchmarks/bench_slots_servers.py --llama-server PATH [--models NAME,...] [--tokens N]
                                                       [--clients 1,2,4,8] [--no-write]

Each server runs as its own process on the same model file, 2 threads, a 4096-token context. n streaming clients
(the official openai package, one thread each) send different questions at once, greedy, `--tokens` long
(`ignore_eos`: every server does the same work). Aggregate decode: every reply token over the wall time from the
first request to the last token; TTFT: from the requests' start to each client's first text. llama.cpp's server is
built from the llama.cpp that llama-cpp-python vendors (its sdist: `cmake -B build -DLLAMA_CURL=OFF && cmake --build
build --target llama-server`), outside the repository; never in CI. Writes its section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402

QUESTIONS = ["Tell me about lighthouses.", "Write a story about a fox.", "Explain how rain forms.",
             "Describe a busy market.", "What do bees do all day?", "Tell me about the moon.",
             "Write a letter to a friend.", "Describe a winter morning."]
THREADS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], port: int, name: str, env=None):
    import httpx

    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited: {log.read()[-2000:].decode('utf-8', 'replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200 or \
                    httpx.get(url + "/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def servers(model_path: Path, name: str, llama_server: str | None):
    """(label, command builder, extra request fields) of each server to measure."""
    from runtimes.llama_library import cpu_has_amx

    def lantern(port):
        return [str(ROOT / ".venv" / "bin" / "lantern"), "serve", "--model", name, "--slots", "4", "--n-ctx", "4096",
                "--threads", str(THREADS), "--no-prompt-lookup", "--port", str(port)]

    def llama(port):
        return [llama_server, "-m", str(model_path), "-np", "4", "-kvu", "-c", "4096", "-t", str(THREADS),
                "--host", "127.0.0.1", "--port", str(port), "--alias", name,
                *(["--no-repack"] if cpu_has_amx() else [])]

    def peer(port):
        return [sys.executable, "-m", "benchmarks.peer_server", "--model", str(model_path), "--host", "127.0.0.1", "--port",
                str(port), "--n_ctx", "4096", "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS),
                "--model_alias", name, "--interrupt_requests", "False"]  # queue, as the others do

    same_work = {"ignore_eos": True}
    out = [("Lantern (--slots 4)", lantern, same_work)]
    if llama_server:
        out.append(("llama-server -np 4", llama, same_work))
    # llama-cpp-python's server has no ignore_eos: the model's end tokens are banned instead (the same effect)
    out.append(("llama-cpp-python server", peer, {"logit_bias": {str(t): -100 for t in _end_tokens(model_path)}}))
    return out


def _end_tokens(model_path: Path) -> list[int]:
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions

    rt = LlamaCppRuntime(model_path, LoadOptions(n_ctx=256))
    try:
        return sorted(rt.special.end_of_turn)
    finally:
        rt.close()


def clients(url: str, model: str, n: int, tokens: int, tag: str, extra: dict) -> tuple[float, list[float], int, int]:
    """n clients at once: (aggregate tokens/s, each one's TTFT in s, all reply tokens, failed requests). `tag` starts
    every question, so no server has its prompt cached from an earlier run."""
    import openai

    firsts, counts, failed = [float("nan")] * n, [0] * n, [0]
    last = [0.0]
    start = threading.Barrier(n + 1)

    def one(i: int) -> None:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        start.wait()
        try:
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"{tag} {QUESTIONS[i % len(QUESTIONS)]}"}],
                temperature=0, max_tokens=tokens, stream=True, stream_options={"include_usage": True},
                extra_body=extra)
            read(i, stream)
        except openai.APIError:
            failed[0] += 1

    def read(i: int, stream) -> None:
        usage = None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    now = time.perf_counter()
                    if counts[i] == 0:
                        firsts[i] = now - t0
                    counts[i] += 1
                    last[0] = max(last[0], now)
        if usage is not None:
            counts[i] = usage.completion_tokens

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    total = sum(counts)
    return (total / (last[0] - t0) if total else 0.0), firsts, total, failed[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="gemma3-270m,smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from models.library import resolve_model

    counts = [int(c) for c in args.clients.split(",")]
    rows = []
    for name in args.models.split(","):
        path = resolve_model(name)
        for label, command, extra in servers(path, name, args.llama_server):
            port = _free_port()
            proc, url = _start(command(port), port, label)
            try:
                clients(url, name, 1, 4, "(warm-up)", extra)
                solo = None
                for n in counts:
                    speed, firsts, total, failed = clients(url, name, n, args.tokens, f"({n} at once)", extra)
                    solo = solo or (speed or float("nan"), firsts[0])
                    ok = [f for f in firsts if f == f]
                    rows.append((name, label, f"{n}", f"{speed:.1f}", f"{speed / solo[0]:.2f}x",
                                 f"{statistics.median(ok) * 1000:.0f}" if ok else "-",
                                 f"{max(ok) * 1000:.0f}" if ok else "-", f"{total}", f"{failed}"))
                    print(rows[-1], flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    body = (f"## Several clients at once, three servers\n\nMachine: {machine()}. Command: "
            f"`.venv/bin/python benchmarks/bench_slots_servers.py --llama-server PATH --tokens {args.tokens}`. Date: "
            f"{datetime.date.today()}.\n\nn streaming clients of the official openai package at once, each a "
            f"different question, greedy, {args.tokens} tokens (ignore_eos; llama-cpp-python's server, which has no "
            f"ignore_eos, with the end tokens banned by logit_bias), {THREADS} threads, 4096-token context, "
            "each server its own process: Lantern with 4 slots (prompt lookup off: batching alone), llama.cpp's "
            "server built from the llama.cpp llama-cpp-python 0.3.36 vendors (-np 4, unified KV), llama-cpp-python's "
            "server (one request at a time):\n\n"
            + markdown_table(("model", "server", "clients", "aggregate tok/s", "vs its 1 client", "TTFT median (ms)",
                              "TTFT worst (ms)", "reply tokens", "failed"), rows) + "\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "slots-servers", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
