"""Engine figures on this machine: decode speed, per-turn TTFT, switching back to a long chat.

    .venv/bin/python benchmarks/bench_engine.py [--model NAME] [--repeats N] [--no-write]

Prints a table and writes it into docs/benchmarks.md (between the engine markers).
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

from engine.engine import Engine, EngineOptions  # noqa: E402
from engine.events import GenerationRequest  # noqa: E402
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.llama_library import default_threads  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402
from engine.sampling import SamplingParams  # noqa: E402
from models.library import resolve_model  # noqa: E402
from benchmarks.lookup import peer_llama  # noqa: E402
from benchmarks.doc import machine, write_section  # noqa: E402

GREEDY = SamplingParams(temperature=0)
STORY = "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper named"
WORDS = ("river mountain lantern engine quiet market window garden winter signal harbor copper letter orchard "
         "station meadow candle compass thunder velvet silver pocket ladder marble forest island").split()


def paragraph(seed: int, n_words: int) -> str:
    """Deterministic filler text with little repetition."""
    out, x = [], seed * 7919 + 1
    for i in range(n_words):
        x = (x * 1103515245 + 12345) % (1 << 31)
        out.append(WORDS[x % len(WORDS)])
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out)


def until_tokens(rt, n_tokens: int, seed: int) -> str:
    """A paragraph of about `n_tokens` tokens on this model's tokenizer."""
    words = n_tokens
    while True:
        text = paragraph(seed, words)
        n = len(rt.tokenize(text, add_bos=False))
        if abs(n - n_tokens) <= 3:
            return text
        words = max(1, int(words * n_tokens / n))


def run_request(engine, request):
    text, final = [], None
    for event in engine.generate(request):
        if hasattr(event, "text"):
            text.append(event.text)
        else:
            final = event
    return "".join(text), final.stats


def bench_decode(path, threads, repeats, n_tokens=128):
    engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=2048, n_threads=threads)),
                    options=EngineOptions(prompt_lookup=False))  # plain decoding against plain decoding
    llm = peer_llama(path, threads, 2048)
    ours, theirs = [], []
    for _ in range(repeats):
        engine.forget_cache()
        _, s = run_request(engine, GenerationRequest(prompt=STORY, sampling=GREEDY, max_tokens=n_tokens))
        assert s.completion_tokens == n_tokens, s
        ours.append(s.decode_tokens_per_s)
        llm.reset()
        stamps = [time.perf_counter() for _ in llm.create_completion(STORY, max_tokens=n_tokens, temperature=0.0,
                                                                      stream=True)]
        theirs.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    engine.runtime.close()
    ours_m, theirs_m = statistics.median(ours), statistics.median(theirs)
    return [
        (f"Decode, greedy, {n_tokens} tokens: Lantern", f"{ours_m:.1f} tok/s", f"median of {repeats}"),
        (f"Decode, greedy, {n_tokens} tokens: llama-cpp-python create_completion", f"{theirs_m:.1f} tok/s",
         f"median of {repeats}"),
        ("Lantern / llama-cpp-python decode speed", f"{ours_m / theirs_m:.3f}", "target >= 0.97"),
    ]


def bench_turns(path, threads, repeats, turns=6, new_tokens=450):
    per_turn: dict[int, list] = {t: [] for t in range(1, turns + 1)}
    for r in range(repeats):
        engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)))
        cold = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)))
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for t in range(1, turns + 1):
            body = until_tokens(engine.runtime, new_tokens - 16, 100 * r + t)
            messages.append({"role": "user", "content": "Summarise this: " + body})
            reply, s = run_request(engine, GenerationRequest(messages=messages, sampling=GREEDY, max_tokens=24))
            messages.append({"role": "assistant", "content": reply})
            # llama.cpp alone on the same new tokens at the same depth: what the engine cannot save.
            prompt = engine.cached_tokens[: s.prompt_tokens]
            cold.runtime.reset()
            if s.cached_tokens:
                cold.runtime.forward(prompt[: s.cached_tokens], 0)
            t0 = time.perf_counter()
            cold.runtime.forward(prompt[s.cached_tokens:], s.cached_tokens)
            raw_ms = (time.perf_counter() - t0) * 1000
            # A cold prompt of the same new-token count, from an empty cache.
            cold.forget_cache()
            cold.states.clear()
            _, c = run_request(cold, GenerationRequest(
                prompt=until_tokens(cold.runtime, s.prefill_tokens, 999 + 10 * r + t), sampling=GREEDY, max_tokens=1))
            per_turn[t].append((s, c, raw_ms))
        engine.runtime.close()
        cold.runtime.close()
    rows = []
    for t, runs in per_turn.items():
        s = runs[0][0]
        warm_ms = statistics.median(x[0].ttft_ms for x in runs)
        cold_ms = statistics.median(x[1].ttft_ms for x in runs)
        raw_ms = statistics.median(x[2] for x in runs)
        rows.append((f"Turn {t}: {s.prefill_tokens} new tokens after {s.cached_tokens} cached", f"TTFT {warm_ms:.0f} ms",
                     f"cold {runs[0][1].prompt_tokens}-token prompt {cold_ms:.0f} ms, ratio {warm_ms / cold_ms:.2f} "
                     f"(target <= 1.15); llama.cpp alone on the same tokens at this depth {raw_ms:.0f} ms"))
    return rows


def bench_switch(path, threads, repeats, long_tokens=3000):
    ours, theirs, last = [], [], None
    for r in range(repeats):
        engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)))
        a = [{"role": "user", "content": "Read this: " + until_tokens(engine.runtime, long_tokens, 5000 + r)}]
        b = [{"role": "user", "content": "Say hello in French."}]
        reply_a, _ = run_request(engine, GenerationRequest(messages=a, sampling=GREEDY, max_tokens=16))
        run_request(engine, GenerationRequest(messages=b, sampling=GREEDY, max_tokens=16))
        a2 = a + [{"role": "assistant", "content": reply_a}, {"role": "user", "content": "What came first?"}]
        _, last = run_request(engine, GenerationRequest(messages=a2, sampling=GREEDY, max_tokens=8))
        ours.append(last.ttft_ms)
        engine.runtime.close()

        llm = peer_llama(path, threads, 4096)
        ra = llm.create_chat_completion(a, max_tokens=16, temperature=0)["choices"][0]["message"]["content"]
        llm.create_chat_completion(b, max_tokens=16, temperature=0)
        a2 = a + [{"role": "assistant", "content": ra}, {"role": "user", "content": "What came first?"}]
        t0 = time.perf_counter()
        for _ in llm.create_chat_completion(a2, max_tokens=8, temperature=0, stream=True):
            theirs.append((time.perf_counter() - t0) * 1000)
            break
        llm.close()
    return [
        (f"Back to a {last.prompt_tokens}-token chat after another: Lantern", f"TTFT {statistics.median(ours):.0f} ms",
         f"{last.restored_tokens} tokens restored, {last.prefill_tokens} prefilled (target <= 500 ms)"),
        ("Same with llama-cpp-python Llama.create_chat_completion", f"TTFT {statistics.median(theirs):.0f} ms",
         "computes the chat again"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    path = resolve_model(args.model)
    rows = bench_decode(path, args.threads, args.repeats)
    rows += bench_turns(path, args.threads, max(1, args.repeats - 1))
    rows += bench_switch(path, args.threads, max(1, args.repeats - 2))
    table = "| measure | result | note |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    header = (f"Machine: {machine()}  \nModel: {args.model} ({path.name}), {args.threads} threads  \n"
              f"Command: `.venv/bin/python benchmarks/bench_engine.py --repeats {args.repeats}`  \n"
              f"Date: {datetime.date.today().isoformat()}\n\n")
    print(header + table)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "engine", "## Engine (foundation)\n\n" + header + table + "\n")


if __name__ == "__main__":
    main()
