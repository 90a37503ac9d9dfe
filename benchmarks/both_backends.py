"""Both backends side by side on the same SmolLM2 weights (the GGUF file, and its MLX conversion).

    .venv/bin/lantern bench --backends [--repeats N] [--no-write]   (or benchmarks/bench_backends.py)

Workloads: plain greedy decode, prompt lookup on copied text, the TTFT of a second turn, and the
TTFT of going back to a conversation after another. Prints a table and writes it into
docs/benchmarks.md (between the backends markers). On a CPU nothing says which backend is faster:
MLX's Linux wheel has reference BLAS and no fast quantized kernels, Metal is another world.
"""
from __future__ import annotations

import datetime
import statistics
import tempfile
from pathlib import Path

from benchmarks.doc import machine, write_section
from engine.engine import Engine, EngineOptions
from engine.events import Finished, GenerationRequest
from engine.sampling import SamplingParams
from models.convert import convert_gguf_to_mlx
from models.library import resolve_model
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.mlx_runtime import MlxRuntime
from runtimes.runtime import LoadOptions

ROOT = Path(__file__).resolve().parents[1]
NOTES = """
Notes: MLX here is the `mlx[cpu]` Linux wheel, which links netlib's reference BLAS and has no fast quantized
CPU kernels (a 64x576 by 576x1536 matmul: 47 ms, numpy ~7x faster), so it is ~17x slower than llama.cpp on this
CPU; it says nothing about MLX on Metal. A forward pass costs about k times one token on both backends here,
so the adaptive lookup policy declines to draft (acceptance shows the few probes); forced drafts of 4 show the
mechanism (tokens per forward pass) and what it costs when verification is not cheaper than decoding. Both
backends restore a saved conversation instead of recomputing it (back-to-chat vs cold).
"""
GREEDY = SamplingParams(temperature=0)
N_TOKENS = 32
CODE = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n"
COPY = f"Here is a file:\n\n{CODE}\nThe same file again, unchanged:\n\n"
STORY = "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper named"
LONG_USER = ("Here are my notes from the trip: we left early, crossed the river at the old bridge, walked the "
             "ridge to the lake, ate by the water, watched the storm come in over the hills, and came back down "
             "through the pine forest just before dark. Turn them into a short diary entry.")


def final(engine: Engine, request: GenerationRequest) -> Finished:
    for event in engine.generate(request):
        if isinstance(event, Finished):
            return event
    raise AssertionError("no Finished event")


def open_runtime(backend: str, gguf: Path, mlx_dir: Path):
    if backend == "mlx":
        return MlxRuntime(mlx_dir, LoadOptions(n_ctx=2048))

    return LlamaCppRuntime(gguf, LoadOptions(n_ctx=2048))


def measure(backend: str, gguf: Path, mlx_dir: Path, repeats: int) -> dict:
    rt = open_runtime(backend, gguf, mlx_dir)
    rows: dict[str, list[float]] = {k: [] for k in ("plain", "lookup", "accept", "forced", "forced_tpf",
                                                 "turn_ttft", "cold_ttft", "back_ttft")}
    try:
        plain = Engine(rt, options=EngineOptions(prompt_lookup=False))
        lookup = Engine(rt)
        # drafts of up to 4 at every step, whatever they cost: the mechanism, apart from the policy
        forced = Engine(rt, options=EngineOptions(adaptive_draft=False, draft_max=4))
        for _ in range(repeats):
            plain.forget_cache()
            f = final(plain, GenerationRequest(prompt=STORY, sampling=GREEDY, max_tokens=N_TOKENS))
            rows["plain"].append(f.stats.decode_tokens_per_s)
            lookup.forget_cache()
            lookup.forget_draft_statistics()
            f = final(lookup, GenerationRequest(prompt=COPY, sampling=GREEDY, max_tokens=N_TOKENS))
            rows["lookup"].append(f.stats.decode_tokens_per_s)
            rows["accept"].append(f.stats.acceptance_rate)
            forced.forget_cache()
            f = final(forced, GenerationRequest(prompt=COPY, sampling=GREEDY, max_tokens=N_TOKENS))
            rows["forced"].append(f.stats.decode_tokens_per_s)
            rows["forced_tpf"].append(f.stats.tokens_per_forward)
            plain.forget_cache()
            # a second turn
            a = [{"role": "user", "content": LONG_USER}]
            final(plain, GenerationRequest(messages=a, sampling=GREEDY, max_tokens=8))
            a2 = a + [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "Make it shorter."}]
            rows["turn_ttft"].append(final(plain, GenerationRequest(messages=a2, sampling=GREEDY, max_tokens=1))
                                     .stats.ttft_ms)
            # another conversation, then back
            final(plain, GenerationRequest(messages=[{"role": "user", "content": "Hi."}], sampling=GREEDY,
                                           max_tokens=1))
            a3 = a2 + [{"role": "assistant", "content": "Ok."}, {"role": "user", "content": "Thanks."}]
            rows["back_ttft"].append(final(plain, GenerationRequest(messages=a3, sampling=GREEDY, max_tokens=1))
                                     .stats.ttft_ms)
            # the same chat with nothing cached
            plain.forget_cache()
            plain.states.clear()
            rows["cold_ttft"].append(final(plain, GenerationRequest(messages=a3, sampling=GREEDY, max_tokens=1))
                                     .stats.ttft_ms)
    finally:
        rt.close()
    return {k: statistics.median(v) for k, v in rows.items()}


def table(results: dict[str, dict]) -> str:
    lines = ["| backend | plain decode tok/s | lookup on copy tok/s (x plain, acceptance) | forced drafts of 4 tok/s "
             "(tokens/pass) | 2nd-turn TTFT ms | back-to-chat TTFT ms | same chat cold TTFT ms |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['plain']:.1f} | {r['lookup']:.1f} ({r['lookup'] / r['plain']:.2f}x, "
                     f"{r['accept']:.0%}) | {r['forced']:.1f} ({r['forced_tpf']:.2f}) | {r['turn_ttft']:.0f} "
                     f"| {r['back_ttft']:.0f} | {r['cold_ttft']:.0f} |")
    return "\n".join(lines) + "\n"


def run(*, repeats: int = 3, write: bool = True) -> str:
    gguf = resolve_model("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory() as tmp:
        mlx_dir = convert_gguf_to_mlx(gguf, Path(tmp) / "smollm2-mlx")
        results = {b: measure(b, gguf, mlx_dir, repeats) for b in ("llamacpp", "mlx")}
    text = table(results)
    if write:
        header = (f"Machine: {machine()}  \nModel: smollm2-135m-instruct (Q4_1 GGUF; on MLX its conversion, the same "
                  f"weights); greedy, {N_TOKENS} tokens  \nCommand: `.venv/bin/lantern bench --backends "
                  f"--repeats {repeats}`  \nDate: {datetime.date.today().isoformat()}\n\n")
        write_section(ROOT / "docs" / "benchmarks.md", "backends", "## Backends side by side\n\n" + header + text + NOTES)
    return text
