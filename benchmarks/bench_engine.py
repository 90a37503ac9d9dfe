"""Engine figures on this machine: decode speed, per-turn TTFT, switching back to a long chat.

    .venv/bin/python benchmarks/bench_engine.py [--model NAME] [--repeats N] [--no-write]

Prints a table and writes it into docs/benchmarks.md (between the engine markers).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.engine import Engine  # noqa: E402
from backends.events import GenerationRequest  # noqa: E402
from backends.llamacpp import LlamaCppRuntime, default_threads  # noqa: E402
from backends.runtime import LoadOptions  # noqa: E402
from backends.sampling import SamplingParams  # noqa: E402
from models.registry import resolve_model  # noqa: E402

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


def ttft(engine, request) -> tuple[float, object]:
    final = None
    for event in engine.generate(request):
        final = event
    return final.stats.ttft_ms / 1000, final.stats


def bench_decode(path, threads, repeats, n_tokens=128):
    from llama_cpp import Llama

    engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=2048, n_threads=threads)))
    llm = Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    ours, theirs = [], []
    for _ in range(repeats):
        engine.forget_cache()
        _, s = ttft(engine, GenerationRequest(prompt=STORY, sampling=GREEDY, max_tokens=n_tokens))
        ours.append(s.decode_tokens_per_s)
        llm.reset()
        stamps = []
        for _chunk in llm.create_completion(STORY, max_tokens=n_tokens, temperature=0.0, stream=True):
            stamps.append(time.perf_counter())
        theirs.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    engine.runtime.close()
    ours_m, theirs_m = statistics.median(ours), statistics.median(theirs)
    return [
        ("Decode, greedy, 128 tokens: Lantern", f"{ours_m:.1f} tok/s", ""),
        ("Decode, greedy, 128 tokens: llama-cpp-python create_completion", f"{theirs_m:.1f} tok/s", ""),
        ("Lantern / llama-cpp-python decode speed", f"{ours_m / theirs_m:.3f}", "target >= 0.97"),
    ]


def bench_turns(path, threads, repeats, turns=6, new_tokens=450):
    rows = []
    for r in range(repeats):
        engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)))
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for t in range(turns):
            messages.append({"role": "user", "content": "Summarise this: " + until_tokens(engine.runtime, new_tokens - 20, 100 * r + t)})
            text, final = "", None
            for event in engine.generate(GenerationRequest(messages=messages, sampling=GREEDY, max_tokens=24)):
                if hasattr(event, "text"):
                    text += event.text
                else:
                    final = event
            s = final.stats
            # Cold: the same number of new tokens, from an empty cache.
            engine.forget_cache()
            cold_tokens = engine.runtime.tokenize(until_tokens(engine.runtime, s.prefill_tokens, 999 + t), add_bos=True)
            engine.runtime.forward(cold_tokens[:1], 0)  # nothing else in the cache
            engine.runtime.reset()
            t0 = time.perf_counter()
            engine.runtime.forward(cold_tokens, 0)
            cold = time.perf_counter() - t0
            engine.forget_cache()
            engine.states.clear()
            # Put the conversation back for the next turn (not timed).
            messages.append({"role": "assistant", "content": text})
            list(engine.generate(GenerationRequest(messages=messages[:-1] + [messages[-1]], sampling=GREEDY, max_tokens=1))) if False else None
            rows.append((t + 1, s.prefill_tokens, s.cached_tokens, s.ttft_ms / 1000, cold))
            _refill(engine, messages)
        engine.runtime.close()
    out = []
    for t in range(1, turns + 1):
        mine = [x for x in rows if x[0] == t]
        ttft_s = statistics.median(x[3] for x in mine)
        cold_s = statistics.median(x[4] for x in mine)
        out.append((f"Turn {t}: {mine[0][1]} new tokens after {mine[0][2]} cached", f"TTFT {ttft_s * 1000:.0f} ms",
                    f"cold prefill of the same count {cold_s * 1000:.0f} ms, ratio {ttft_s / cold_s:.2f} (target <= 1.15)"))
    return out


def _refill(engine, messages):
    """Bring the cache back to the conversation so far, as a running chat would have it."""
    list(engine.generate(GenerationRequest(messages=messages + [{"role": "user", "content": "ok"}],
                                           sampling=GREEDY, max_tokens=1)))


def bench_switch(path, threads, repeats, long_tokens=3000):
    from llama_cpp import Llama

    ours, theirs = [], []
    for r in range(repeats):
        engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)))
        doc = until_tokens(engine.runtime, long_tokens, 5000 + r)
        a = [{"role": "user", "content": "Read this: " + doc}]
        b = [{"role": "user", "content": "Say hello in French."}]
        reply_a = "".join(getattr(e, "text", "") for e in engine.generate(GenerationRequest(messages=a, sampling=GREEDY, max_tokens=16)))
        list(engine.generate(GenerationRequest(messages=b, sampling=GREEDY, max_tokens=16)))
        a2 = a + [{"role": "assistant", "content": reply_a}, {"role": "user", "content": "What came first?"}]
        seconds, stats = ttft(engine, GenerationRequest(messages=a2, sampling=GREEDY, max_tokens=8))
        ours.append((seconds, stats))
        engine.runtime.close()

        llm = Llama(str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
        ra = llm.create_chat_completion(a, max_tokens=16, temperature=0)["choices"][0]["message"]["content"]
        llm.create_chat_completion(b, max_tokens=16, temperature=0)
        a2 = a + [{"role": "assistant", "content": ra}, {"role": "user", "content": "What came first?"}]
        t0 = time.perf_counter()
        for _ in llm.create_chat_completion(a2, max_tokens=8, temperature=0, stream=True):
            theirs.append(time.perf_counter() - t0)
            break
        del llm
    s = ours[0][1]
    ours_s = statistics.median(x[0] for x in ours)
    return [
        (f"Back to a {s.prompt_tokens}-token chat after another: Lantern", f"TTFT {ours_s * 1000:.0f} ms",
         f"{s.restored_tokens} tokens restored, {s.prefill_tokens} prefilled (target <= 500 ms)"),
        ("Same with llama-cpp-python Llama.create_chat_completion", f"TTFT {statistics.median(theirs) * 1000:.0f} ms",
         "computes the chat again"),
    ]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil
    import llama_cpp

    ram = psutil.virtual_memory().total / 2 ** 30
    return (f"{cpu}, {psutil.cpu_count(logical=True)} cores, {ram:.0f} GiB RAM, {platform.system()}, "
            f"Python {platform.python_version()}, llama-cpp-python {llama_cpp.__version__}")


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


def write_section(doc: Path, name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n\n"
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


if __name__ == "__main__":
    main()
