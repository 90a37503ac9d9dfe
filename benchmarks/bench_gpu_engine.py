"""The engine on a GPU without HTTP: decode speed, forward-pass costs, and where greedy text with lookup parts.

    python benchmarks/bench_gpu_engine.py --model-1b RANDOM_1B.gguf --smol SMOLLM2.gguf --doc DOC.md --out OUT.json

- decode: 128 greedy tokens from the story prompt (llama-bench's tg128), every layer on the GPU, lookup off; the
  median of --repeats replies after a warm-up.
- costs: measure_forward_costs' seconds of a pass of 1, 2, 4, 8, 16 tokens, relative to one (the curve seeded
  requests draft by on this device: engine/draft_policy.py).
- parting: SmolLM2 copying a document, 400 greedy tokens: plain single-token decoding straight on the runtime
  (the reference, with each step's top-two logit gap) against the engine with lookup, unseeded and seeded; where
  they first differ and the reference's gap there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.engine import Engine, EngineOptions  # noqa: E402  (first: basics/native.py)
from engine.events import GenerationRequest, TextDelta  # noqa: E402
from runtimes.runtime import LoadOptions  # noqa: E402
from engine.sampling import SamplingParams  # noqa: E402

import numpy as np  # noqa: E402

# every layer on the GPU; BENCH_GPU_LAYERS=0 runs the same steps on a CPU (a smoke test of this script)
LAYERS = int(os.environ.get("BENCH_GPU_LAYERS", "-1"))
STORY = "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper named"


def reply(engine, request):
    tokens, final, t_first, t0 = [], None, None, time.perf_counter()
    for ev in engine.generate(request):
        if isinstance(ev, TextDelta):
            if t_first is None and ev.tokens:
                t_first = time.perf_counter()
            tokens.extend(ev.tokens)
        else:
            final = ev
    return tokens, final, t0, t_first, time.perf_counter()


def decode(path: str, repeats: int) -> dict:
    from runtimes.llamacpp import LlamaCppRuntime
    from engine.draft_policy import measure_forward_costs

    rt = LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_gpu_layers=LAYERS))
    try:
        engine = Engine(rt, options=EngineOptions(prompt_lookup=False))
        req = GenerationRequest(prompt=STORY, max_tokens=128, ignore_eos=True,
                                sampling=SamplingParams(temperature=0.0))
        reply(engine, GenerationRequest(prompt=STORY, max_tokens=8, sampling=SamplingParams(temperature=0.0)))
        rates = []
        for _ in range(repeats):
            engine.forget_cache()  # the engine's own reset: its record of the cache goes too
            tokens, final, _t0, t_first, t_end = reply(engine, req)
            rates.append((len(tokens) - 1) / (t_end - t_first))
        engine.forget_cache()
        costs = measure_forward_costs(rt, key=("bench", path))
        return {"decode_tok_s": statistics.median(rates), "runs": rates,
                "stats_decode_tok_s": final.stats.decode_tokens_per_s,
                "costs_s": costs, "costs_rel": {n: c / costs[1] for n, c in costs.items()}}
    finally:
        rt.close()


def slot_overhead(path: str, repeats: int) -> dict:
    """One client's decode on 1 slot and on 8, and the passes under them: where a lone client on many slots loses."""
    from app.wiring import start_worker
    from runtimes.llamacpp import LlamaCppRuntime

    out = {}
    for slots in (1, 8):
        rt = LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_gpu_layers=LAYERS, slots=slots), verify=False)
        try:
            rt.forward([100, 200, 300], 0)
            for how in ("forward", "forward_seqs"):
                best = float("inf")
                for _ in range(repeats):
                    rt.truncate(3)
                    t0 = time.perf_counter()
                    for i in range(128):
                        if how == "forward":
                            rt.forward([500 + i], rt.n_past)
                        else:
                            rt.forward_seqs([(0, [500 + i], [0])])
                    best = min(best, (time.perf_counter() - t0) / 128)
                out[f"raw {how}, context of {slots} slots (ms)"] = 1000 * best
        finally:
            rt.close()
        w = start_worker(path, options=LoadOptions(n_ctx=4096, n_gpu_layers=LAYERS, slots=slots),
                         engine_options=EngineOptions(prompt_lookup=False))
        try:
            w.wait_ready(120)
            req = GenerationRequest(prompt=STORY, max_tokens=128, ignore_eos=True,
                                    sampling=SamplingParams(temperature=0.0))
            rates = []
            for _ in range(repeats + 1):
                t_first, n = None, 0
                for ev in w.submit(req):
                    if isinstance(ev, TextDelta) and ev.tokens:
                        t_first = t_first or time.perf_counter()
                        n += len(ev.tokens)
                rates.append((n - 1) / (time.perf_counter() - t_first))
            out[f"worker, {slots} slots (tok/s)"] = statistics.median(rates[1:])
        finally:
            w.close()
    return out


def parting(path: str, doc: str) -> dict:
    from runtimes.llamacpp import LlamaCppRuntime

    src = Path(doc).read_text()[:1800]
    messages = [{"role": "user", "content": f"Repeat the following document exactly.\n\n{src}"}]
    rt = LlamaCppRuntime(path, LoadOptions(n_ctx=4096, n_gpu_layers=LAYERS))
    out = {}
    try:
        engine = Engine(rt, options=EngineOptions(prompt_lookup=True))
        prompt = engine._prompt_tokens(GenerationRequest(messages=messages))[0]
        engine.forget_cache()
        logits = rt.forward(prompt, 0)[0]
        ref, gaps = [], []
        for _ in range(400):
            top2 = np.partition(logits, -2)[-2:]
            gaps.append(float(top2[1] - top2[0]))
            t = int(np.argmax(logits))
            ref.append(t)
            if t in rt.special.end_of_turn:
                break
            logits = rt.forward([t], rt.n_past)[0]
        out["reference_tokens"] = len(ref)
        out["smallest_gaps"] = sorted(gaps)[:5]
        for name, seed in (("lookup", None), ("lookup seeded", 7), ("plain engine", None)):
            engine.forget_cache()
            req = GenerationRequest(messages=messages, max_tokens=400, prompt_lookup=name != "plain engine",
                                    sampling=SamplingParams(temperature=0.0, seed=seed))
            t0 = time.perf_counter()
            tokens, final, _t0, t_first, t_end = reply(engine, req)
            i = next((k for k in range(min(len(ref), len(tokens))) if ref[k] != tokens[k]), None)
            out[name] = {"tokens": len(tokens), "parts_at": i, "gap_there": gaps[i] if i is not None else None,
                         "fraction_same": (i if i is not None else min(len(ref), len(tokens))) / max(1, len(ref)),
                         "drafted": final.stats.drafted_tokens, "accepted": final.stats.accepted_tokens,
                         "tok_s": (len(tokens) - 1) / max(t_end - t_first, 1e-9), "wall_s": t_end - t0}
    finally:
        rt.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-1b")
    ap.add_argument("--smol")
    ap.add_argument("--doc")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for name, path in (("1b", args.model_1b), ("smol", args.smol)):
        if path:
            results[f"decode {name}"] = decode(path, args.repeats)
            r = results[f"decode {name}"]
            print(f"engine decode {name}: {r['decode_tok_s']:.1f} tok/s (runs {[round(x) for x in r['runs']]}); "
                  f"pass costs relative to one token: "
                  + ", ".join(f"{n}: {c:.2f}" for n, c in r["costs_rel"].items()), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=1))
    if args.model_1b:
        results["slot overhead 1b"] = slot_overhead(args.model_1b, args.repeats)
        print("slot overhead 1b:", {k: round(v, 3) for k, v in results["slot overhead 1b"].items()}, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.smol and args.doc:
        results["parting"] = parting(args.smol, args.doc)
        for k, v in results["parting"].items():
            print(f"parting {k}: {v}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
