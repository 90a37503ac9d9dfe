"""How far llama.cpp's logits move with the shape of a pass: the bound tests/conftest.py's NEAR_TIE must exceed.

    .venv/bin/python tests/near_tie.py [--tokens N]

Each chat prompt is decoded alone, one token a pass (the tests' solo reference). The same tokens are then forced
through the shapes the slot scheduler makes: every conversation's next token in one batch of 2, 4 or 8 rows
(engine/slots.py), the prompts read together in one pass, and a prompt read in two pieces. For each step it
compares the reference's top-two gap with the gap of the same two tokens there; the worst change is how close two
logits must be for a greedy run to part from its solo reply. Not a test (it prints figures); the tests check the
bound with test_runtime_slots.py::test_slot_batches_move_logits_less_than_the_near_tie_margin.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

QUESTIONS = ["Name three colours of the rainbow.", "Write a haiku about the sea.", "What is 12 times 12?",
             "Say hello in French.", "Name a fruit that is yellow.", "What colour is the sky?",
             "Count from one to five.", "Describe a cat in one sentence."]


def gap_change(reference: np.ndarray, other: np.ndarray) -> float:
    """How much the reference's top two moved apart or together in `other`."""
    top2 = np.argsort(reference)[-2:]
    return abs(float((reference[top2[1]] - reference[top2[0]]) - (other[top2[1]] - other[top2[0]])))


def solo(rt, prompt: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy alone: the prompt in one pass, then a token a pass; the tokens and the logits each came from."""
    rt.reset()
    logits = [rt.forward(prompt, 0)[0]]
    tokens = []
    for _ in range(n):
        tokens.append(int(np.argmax(logits[-1])))
        logits.append(rt.forward(tokens[-1:], rt.n_past)[0])
    return tokens, logits[:-1]


def batched_changes(rt, prompts: list[list[int]], refs, rows: int) -> list[float]:
    """The prompts read together, then `rows` conversations' next tokens in each pass (the forced solo tokens)."""
    for s in range(rt.slots):
        rt.clear_seq(s)
    changes = []
    for lo in range(0, len(prompts), rows):
        group = range(lo, min(lo + rows, len(prompts)))
        firsts = rt.forward_seqs([(s - lo, prompts[s], None) for s in group])
        changes += [gap_change(refs[s][1][0], f[0]) for s, f in zip(group, firsts)]
        n = min(len(refs[s][0]) for s in group)
        for step in range(n - 1):
            out = rt.forward_seqs([(s - lo, [refs[s][0][step]], None) for s in group])
            changes += [gap_change(refs[s][1][step + 1], o[0]) for s, o in zip(group, out)]
        for s in group:
            rt.clear_seq(s - lo)
    return changes


def beside_prompt_changes(rt, prompts: list[list[int]], refs, chunk: int = 64) -> list[float]:
    """Each conversation's next token in one pass with another sequence's prompt chunk (a prefill beside decoding)."""
    filler = [int(t) for t in np.resize(prompts[0], chunk)]
    changes = []
    for s, (p, (tokens, logits)) in enumerate(zip(prompts, refs)):
        rt.clear_seq(0)
        rt.clear_seq(1)
        out = rt.forward_seqs([(0, p, None), (1, filler, None)])[0][0]
        changes.append(gap_change(logits[0], out))
        for step in range(len(tokens) - 1):
            rt.clear_seq(1)
            out = rt.forward_seqs([(0, [tokens[step]], None), (1, filler, None)])[0][0]
            changes.append(gap_change(logits[step + 1], out))
    rt.clear_seq(0)
    rt.clear_seq(1)
    return changes


def two_piece_changes(rt, prompts: list[list[int]], refs) -> list[float]:
    """Each prompt read in two pieces (a cached prefix, then the rest), then its first tokens one at a time."""
    changes = []
    for p, (tokens, logits) in zip(prompts, refs):
        for cut in sorted({1, len(p) // 3, len(p) // 2, len(p) - 1} - {0}):
            rt.reset()
            rt.forward(p[:cut], 0)
            out = rt.forward(p[cut:], cut)[0]
            changes.append(gap_change(logits[0], out))
            for step in range(4):
                out = rt.forward([tokens[step]], rt.n_past)[0]
                changes.append(gap_change(logits[step + 1], out))
    return changes


def measure(path, n_tokens: int, *, questions=QUESTIONS, rows=(2, 4, 8)) -> dict[str, float]:
    """The worst change of the top-two gap per shape."""
    from conftest import load

    from engine.engine import Engine
    from engine.events import GenerationRequest
    from engine.sampling import SamplingParams

    rt = load(path, n_ctx=4096, slots=max(max(rows), 2))
    engine = Engine(rt)
    prompts = [engine._prompt_tokens(GenerationRequest(messages=[{"role": "user", "content": q}],
                                                       sampling=SamplingParams(temperature=0)))[0]
               for q in questions]
    refs = [solo(rt, p, n_tokens) for p in prompts]
    out = {f"batch of {n}": max(batched_changes(rt, prompts, refs, n)) for n in rows}
    out["beside a 64-token prompt chunk"] = max(beside_prompt_changes(rt, prompts, refs))
    out["two pieces"] = max(two_piece_changes(rt, prompts, refs))
    rt.close()
    return out


def main() -> int:
    from models.library import resolve_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    print("| model | shape | worst change of the top-two gap |\n|---|---|---|")
    for name in ("smollm2-135m-instruct", "gemma3-270m"):
        for shape, worst in measure(resolve_model(name), args.tokens).items():
            print(f"| {name} | {shape} | {worst:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
