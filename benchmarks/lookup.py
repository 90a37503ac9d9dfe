"""`lantern bench`: prompt lookup against plain decoding and against llama-cpp-python, same prompts.

Configurations: llama-cpp-python's Llama plain, Llama with LlamaPromptLookupDecoding (10 and 2 drafted
tokens), Lantern plain, Lantern with prompt lookup. Workloads: copy-heavy (Gemma 3 270M base repeats a
code file with a small change), multi-turn revision and open-ended chat (the starter model).
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass

import llama_cpp
import llama_cpp.llama_cpp as low
import numpy as np
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

from engine.engine import Engine, EngineOptions
from engine.events import GenerationRequest, TextDelta
from engine.sampling import SamplingParams
from models.library import resolve_model
from runtimes.llama_library import cpu_has_amx, default_threads
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.runtime import LoadOptions

GREEDY = SamplingParams(temperature=0)
NEAR_TIE = 0.7  # as in the tests (tests/conftest.py says why): greedy runs may part only where the top two logits are this close
CODE = '''import json
import os


def load_settings(path):
    """Read the settings file and return a dict."""
    if not os.path.exists(path):
        return {}
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def save_settings(path, settings):
    """Write the settings dict to a file."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)


def merge_settings(base, override):
    """Return base updated with override, merging nested dicts."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_settings(result[key], value)
        else:
            result[key] = value
    return result
'''
COPY_PROMPT = (f"Here is a Python file, settings.py:\n\n```python\n{CODE}```\n\nHere is settings.py again with "
               "the function load_settings renamed to read_settings, and nothing else changed:\n\n```python\n")
REVISION = [
    "Write a Python function that reads a CSV file and returns the rows as a list of dictionaries.",
    "Change that function so that it skips empty lines. Show the whole function again.",
]
OPEN_ENDED = [
    "Tell me a short story about a lighthouse keeper who finds a message in a bottle.",
    "Why is the sky blue? Explain it to a ten-year-old.",
    "Give me three ideas for a weekend trip in the mountains.",
]


@dataclass
class Result:
    workload: str
    config: str
    decode_tokens_per_s: float
    ttft_ms: float
    tokens: int
    acceptance: float | None
    same_as_plain: str
    text: str = ""


def peer_llama(path, threads: int, n_ctx: int, draft: int | None = None):
    """llama-cpp-python's Llama with the same threads, the same AMX workaround, and optionally its prompt lookup."""
    default_params = low.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = not cpu_has_amx()  # Llama() segfaults here too otherwise (runtimes/llamacpp.py)
        return p

    low.llama_model_default_params = params
    try:
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False,
                               draft_model=LlamaPromptLookupDecoding(num_pred_tokens=draft) if draft else None)
    finally:
        low.llama_model_default_params = default_params


def _timed_stream(chunks, text_of) -> tuple[str, float, float, int]:
    t0 = time.perf_counter()
    stamps, parts = [], []
    for chunk in chunks:
        stamps.append(time.perf_counter())
        parts.append(text_of(chunk))
    n = len(stamps)
    tps = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else 0.0
    return "".join(parts), (stamps[0] - t0) * 1000 if stamps else 0.0, tps, n


def run_llama(llm, workload: str, max_tokens: int) -> list[tuple[str, float, float, int]]:
    out = []
    if workload == "copy":
        llm.reset()
        out.append(_timed_stream(llm.create_completion(COPY_PROMPT, max_tokens=max_tokens, temperature=0, stream=True,
                                                       stop=["```"]), lambda c: c["choices"][0]["text"]))
    elif workload == "revision":
        llm.reset()
        first = llm.create_chat_completion([{"role": "user", "content": REVISION[0]}], max_tokens=max_tokens,
                                           temperature=0)["choices"][0]["message"]["content"]
        messages = [{"role": "user", "content": REVISION[0]}, {"role": "assistant", "content": first},
                    {"role": "user", "content": REVISION[1]}]
        out.append(_timed_stream(llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0, stream=True),
                                 lambda c: c["choices"][0]["delta"].get("content", "")))
    else:
        for q in OPEN_ENDED:
            llm.reset()
            out.append(_timed_stream(llm.create_chat_completion([{"role": "user", "content": q}], max_tokens=max_tokens,
                                                                temperature=0, stream=True),
                                     lambda c: c["choices"][0]["delta"].get("content", "")))
    return out


def run_lantern(engine: Engine, workload: str, max_tokens: int, lookup: bool):
    engine.forget_draft_statistics()  # each run starts cold, as a fresh conversation would
    def one(request):
        ids, text, final = [], [], None
        for event in engine.generate(request):
            if isinstance(event, TextDelta):
                ids += event.tokens
                text.append(event.text)
            else:
                final = event
        return "".join(text), ids, final.stats, engine.cached_tokens[: final.stats.prompt_tokens]

    out = []
    if workload == "copy":
        engine.forget_cache()
        out.append(one(GenerationRequest(prompt=COPY_PROMPT, sampling=GREEDY, max_tokens=max_tokens, stop=["```"],
                                         prompt_lookup=lookup)))
    elif workload == "revision":
        engine.forget_cache()
        # Turn 1 is the same plain reply for both, so turn 2 answers the same prompt.
        first, *_ = one(GenerationRequest(messages=[{"role": "user", "content": REVISION[0]}], sampling=GREEDY,
                                          max_tokens=max_tokens, prompt_lookup=False))
        messages = [{"role": "user", "content": REVISION[0]}, {"role": "assistant", "content": first},
                    {"role": "user", "content": REVISION[1]}]
        out.append(one(GenerationRequest(messages=messages, sampling=GREEDY, max_tokens=max_tokens,
                                         prompt_lookup=lookup)))
    else:
        for q in OPEN_ENDED:
            engine.forget_cache()
            out.append(one(GenerationRequest(messages=[{"role": "user", "content": q}], sampling=GREEDY,
                                             max_tokens=max_tokens, prompt_lookup=lookup)))
    return out


WORKLOADS = {"copy": ("gemma3-270m", 300), "revision": ("smollm2-135m-instruct", 200),
             "open-ended": ("smollm2-135m-instruct", 150)}


def benchmark(*, threads: int | None = None, workloads=tuple(WORKLOADS), peers: bool = True,
              repeats: int = 3) -> list[Result]:
    threads = threads or default_threads()
    results: list[Result] = []
    for workload in workloads:
        model, max_tokens = WORKLOADS[workload]
        path = resolve_model(model)
        engine = Engine(LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_threads=threads)), options=EngineOptions())
        plain_runs, fast_runs = [], []
        for _ in range(repeats):  # interleaved, so drifts of the machine hit both alike
            plain_runs.append(run_lantern(engine, workload, max_tokens, lookup=False))
            fast_runs.append(run_lantern(engine, workload, max_tokens, lookup=True))
        plain, fast = plain_runs[0], fast_runs[0]
        same = _compare(engine.runtime, plain, fast)
        engine.runtime.close()
        for name, runs, same_text in (("Lantern, plain", plain_runs, "yes (reference)"),
                                      ("Lantern, prompt lookup", fast_runs, same)):
            drafted = sum(r[2].drafted_tokens for rep in runs for r in rep)
            accepted = sum(r[2].accepted_tokens for rep in runs for r in rep)
            results.append(Result(
                workload, name,
                statistics.median(statistics.mean(r[2].decode_tokens_per_s for r in rep) for rep in runs),
                statistics.median(statistics.mean(r[2].ttft_ms for r in rep) for rep in runs),
                sum(len(r[1]) for r in runs[0]), accepted / drafted if drafted else None, same_text, runs[0][0][0]))
        if peers:
            base_text = None
            for name, draft in (("llama-cpp-python, plain", None), ("llama-cpp-python, lookup 10", 10),
                                ("llama-cpp-python, lookup 2", 2)):
                llm = peer_llama(path, threads, 4096, draft)
                runs = run_llama(llm, workload, max_tokens)
                llm.close()
                texts = [t for t, _, _, _ in runs]
                base_text = base_text or texts
                results.append(Result(workload, name, statistics.mean(r[2] for r in runs),
                                      statistics.mean(r[1] for r in runs), sum(r[3] for r in runs), None,
                                      "yes (reference)" if draft is None else ("yes" if texts == base_text else "no"),
                                      texts[0]))
    return results


def _compare(runtime, plain, fast) -> str:
    """'yes', or where the replies part and whether the plain run had a near tie there."""
    for k, (p, f) in enumerate(zip(plain, fast)):
        a, b = p[1], f[1]
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if i is None:
            if len(a) == len(b):
                continue
            i = min(len(a), len(b))  # one ended (an end token, not in the ids) where the other went on
        runtime.reset()
        logits = runtime.forward(p[3] + a[:i], 0)[0]
        top2 = np.sort(logits)[-2:]
        gap = float(top2[1] - top2[0])
        verdict = "yes, up to a near tie" if gap < NEAR_TIE else "NO"
        return f"{verdict}: reply {k + 1} parts at token {i}, top-2 logit gap {gap:.3f}"
    return "yes"


def table(results: list[Result]) -> str:
    plain = {r.workload: r.decode_tokens_per_s for r in results if r.config == "Lantern, plain"}
    plain_ttft = {r.workload: r.ttft_ms for r in results if r.config == "Lantern, plain"}
    lines = ["| workload | configuration | decode tok/s | vs Lantern plain | TTFT ms | TTFT vs plain | acceptance "
             "| reply equals its plain greedy |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        acc = f"{r.acceptance:.0%}" if r.acceptance is not None else "-"
        lines.append(f"| {r.workload} | {r.config} | {r.decode_tokens_per_s:.1f} | "
                     f"{r.decode_tokens_per_s / plain[r.workload]:.2f} | {r.ttft_ms:.0f} | "
                     f"{r.ttft_ms / plain_ttft[r.workload]:.2f} | {acc} | {r.same_as_plain} |")
    return "\n".join(lines)


def to_json(results: list[Result]) -> str:
    return json.dumps([{k: v for k, v in asdict(r).items() if k != "text"} for r in results], indent=2)
