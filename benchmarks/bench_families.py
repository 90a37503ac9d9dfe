"""What each model family computes again per turn: a chat's turns, a regenerate, an edit, a switch to another
chat and back, and prompt lookup, on a plain transformer (SmolLM2), a sliding-window model (Gemma 3 270M) and a
recurrent one and three hybrids (tiny random-weight Mamba-2, LFM2, Qwen3.5 and Nemotron-H: their figures are
about reuse, not speed), and on MLX a tiny LFM2 and a tiny Gemma 3 with a 16-token window.

    .venv/bin/python benchmarks/bench_families.py [--no-write] [--label after]

Prints prefilled tokens per step (of the prompt's tokens) and writes the table into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402

STEPS = ("turn 1", "turn 2", "regenerate", "edit", "other chat", "back, turn 3", "lookup drafts accepted",
         "new chat, same system prompt")
SYSTEM = "You are a helpful assistant who answers in full sentences. " * 12


def scenario(path: Path, system: str = SYSTEM) -> list[str]:
    from engine.engine import Engine
    from engine.events import Finished, GenerationRequest
    from runtimes.llamacpp import LlamaCppRuntime
    from runtimes.runtime import LoadOptions
    from engine.sampling import SamplingParams
    from engine.state_cache import StateCache

    if path.is_dir():
        from runtimes.mlx_runtime import MlxRuntime

        runtime = MlxRuntime(path, LoadOptions(n_ctx=4096))
    else:
        runtime = LlamaCppRuntime(path, LoadOptions(n_ctx=4096))
    engine = Engine(runtime, state_cache=StateCache())
    greedy = SamplingParams(temperature=0, seed=1)

    def ask(messages, **kw):
        text, final = [], None
        for e in engine.generate(GenerationRequest(messages=messages, sampling=greedy, **kw)):
            if isinstance(e, Finished):
                final = e
            else:
                text.append(e.text)
        return "".join(text), final.stats

    def cell(stats) -> str:
        return f"{stats.prefill_tokens} of {stats.prompt_tokens}"

    out = []
    a = [{"role": "system", "content": system}, {"role": "user", "content": "Name three rivers of Europe."}]
    reply, s = ask(a, max_tokens=24)
    out.append(cell(s))
    a += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Which is the longest?"}]
    reply, s = ask(a, max_tokens=24)
    out.append(cell(s))
    _, s = ask(a, max_tokens=24)
    out.append(cell(s))
    _, s = ask([*a[:-1], {"role": "user", "content": "Which is the shortest?"}], max_tokens=24)
    out.append(cell(s))
    _, s = ask([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi!" * 40}], max_tokens=24)
    out.append(cell(s))
    a += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Thanks."}]
    _, s = ask(a, max_tokens=24)
    out.append(cell(s))
    copy = "Repeat exactly: " + " ".join(f"row {i}: value {i * 3}" for i in range(30))
    _, s = ask([{"role": "user", "content": copy}], max_tokens=96, prompt_lookup=True)
    out.append(f"{s.accepted_tokens} of {s.drafted_tokens}" if engine.options.prompt_lookup else "lookup off")
    _, s = ask([{"role": "system", "content": system}, {"role": "user", "content": "Name a river of Africa."}],
               max_tokens=24)
    out.append(cell(s))
    engine.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    from models.library import resolve_model
    from models.convert import convert_gguf_to_mlx
    from tiny_models import write_lfm2, write_mamba2, write_mlx, write_nemotron_h, write_qwen35

    cache = Path.home() / ".cache" / "lantern-bench"
    cache.mkdir(parents=True, exist_ok=True)
    smol = resolve_model("smollm2-135m-instruct")
    models = [("SmolLM2-135M (plain)", smol), ("Gemma 3 270M (sliding window 512)", resolve_model("gemma3-270m")),
              ("tiny Mamba-2 (recurrent)", write_mamba2(smol, cache / "tiny-mamba2.gguf")),
              ("tiny LFM2 (convolutions and attention)", write_lfm2(smol, cache / "tiny-lfm2.gguf")),
              ("tiny Qwen3.5 (Gated DeltaNet and attention)", write_qwen35(smol, cache / "tiny-qwen35.gguf")),
              ("tiny Nemotron-H (Mamba-2, feed-forward and attention)",
               write_nemotron_h(smol, cache / "tiny-nemotron-h.gguf"))]
    smol_mlx = cache / "smollm2-mlx"
    if not smol_mlx.exists():
        convert_gguf_to_mlx(smol, smol_mlx)
    models += [("tiny LFM2 on MLX (ArraysCache and KVCache)", write_mlx("lfm2", smol_mlx, cache / "tiny-mlx-lfm2")),
               ("tiny Gemma 3 on MLX (16-token RotatingKVCache)",
                write_mlx("gemma3_text", smol_mlx, cache / "tiny-mlx-gemma3"))]
    models.insert(2, ("Gemma 3 270M, a 700-token system prompt (past the window)", resolve_model("gemma3-270m"),
                      SYSTEM * 4))
    rows = []
    for label, path, *system in models:
        t0 = time.perf_counter()
        rows.append((label + (f" {args.label}" if args.label else ""), *scenario(path, *system)))
        print(*rows[-1], f"({time.perf_counter() - t0:.0f} s)", sep=" | ", flush=True)
    table = markdown_table(("model", *STEPS), rows)
    body = (f"Machine: {machine()}. Command: `.venv/bin/python benchmarks/bench_families.py`. Date: {date.today()}.\n\n"
            "Prefilled tokens of the prompt's tokens at each step of one session (greedy, 24-token replies); the last "
            "column: prompt-lookup drafts accepted of drafted on a copying prompt.\n\n" + table + "\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "families", "## Reuse per model family\n\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
