from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
import time

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from engine.engine import Engine  # first: llama.cpp's libraries load before numpy's (basics/native.py)
from models.library import resolve_model
from runtimes.runtime import LoadOptions

# The window tests' fixtures (make_window, hub) need Qt; every other test collects and runs without it (a GPU
# machine, a server without a desktop). A window test there fails at its own `import PySide6`, saying why.
pytest_plugins = ["window_fixtures"] if importlib.util.find_spec("PySide6") else []

# Greedy runs may part where llama.cpp's batched and single-token logits order two tokens
# differently; that only happens when the reference's top two logits are this close. On this CPU
# build the shapes the slot scheduler makes (2 to 8 conversations' tokens in one pass, a token beside
# another's prompt chunk, a prompt read in two pieces) change the top-two gap by up to 0.78 against the
# solo run, a token a pass (`.venv/bin/python tests/near_tie.py`, 8 chats x 48 tokens, SmolLM2 and
# Gemma 3; 2026-12-02); the margin leaves room for other CPUs' kernels.
NEAR_TIE = 1.0

# Tests never read or write the user's own settings, models or chats (tests that need a folder set their own).
os.environ["LANTERN_DATA_DIR"] = tempfile.mkdtemp(prefix="lantern-test-data-")


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    """Fail any test that leaves a thread running (shared/STYLE.md)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Qt's pool threads show up as dummies once they run Python; the window's tests wait for their tasks.
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and not isinstance(t, threading._DummyThread)
                and t.name != "lantern-parked"]  # a thread that ran MLX waits forever by design (engine/worker.py)
        if not left:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {[t.name for t in left]}")


def starter_label() -> str:
    """Where this machine runs the starter, as the window and the CLI label it ("llamacpp (CPU)", "llamacpp (GPU)"):
    the real machine's answer, which `lantern doctor` also reports (tests never assume there is no GPU)."""
    from app.wiring import plan_load

    return plan_load("smollm2-135m-instruct", options=LoadOptions(n_ctx=512)).label


@pytest.fixture(scope="session")
def smollm2_path():
    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma_path():
    return resolve_model("gemma3-270m")


# `scripts/test --gpu`: the engine, runtime, slot, lookup, seed and server tests on the GPU build, every layer on the
# GPU (the workers plan that by themselves on such a machine; the runtime fixtures here are told).
GPU_MODE = os.environ.get("LANTERN_TEST_GPU") == "1"


def load(path, **options):
    from runtimes.llamacpp import LlamaCppRuntime

    defaults = {"n_ctx": 2048, "n_gpu_layers": -1 if GPU_MODE else None}
    return LlamaCppRuntime(path, LoadOptions(**{**defaults, **options}))


def pytest_sessionstart(session):
    if not GPU_MODE:
        return
    from machine.hardware import detect

    hw = detect()
    if not hw.llamacpp_gpu_offload or starter_label() != "llamacpp (GPU)":
        raise pytest.UsageError(f"scripts/test --gpu needs llama.cpp built for this GPU; this build: "
                                f"{hw.llamacpp_gpu_backend or 'CPU only'}, GPUs: {[g.name for g in hw.gpus]}")


def pytest_collection_modifyitems(config, items):
    """In GPU mode the MLX variants are left out, and said so: the GPU suite checks the CUDA build."""
    if not GPU_MODE:
        return
    mlx = [i for i in items if "mlx" in i.name.lower() or "smollm2_mlx_path" in getattr(i, "fixturenames", ())]
    # scripts/gpu-check's machine has no network, and Gemma 3 (250 MB) does not travel to it with the starter
    gemma = [i for i in items if os.environ.get("LANTERN_TEST_NO_GEMMA") == "1" and i not in mlx
             and ("gemma" in i.name.lower() or "gemma_path" in getattr(i, "fixturenames", ()))]
    if mlx or gemma:
        config.hook.pytest_deselected(items=mlx + gemma)
        items[:] = [i for i in items if i not in mlx and i not in gemma]
        print(f"\nGPU mode: {len(mlx)} MLX tests deselected (the CUDA build is what this mode checks)"
              + (f", {len(gemma)} Gemma 3 tests (LANTERN_TEST_NO_GEMMA: the model is not on this machine)"
                 if gemma else ""))


@pytest.fixture
def smollm2(smollm2_path):
    rt = load(smollm2_path)
    yield rt
    rt.close()


@pytest.fixture
def engine(smollm2):
    return Engine(smollm2)


def run(engine: Engine, request) -> tuple[str, list[int], object]:
    """A whole reply from the engine: its text, its token ids and its final event."""
    from engine.events import TextDelta

    text, tokens, final = [], [], None
    for event in engine.generate(request):
        if isinstance(event, TextDelta):
            text.append(event.text)
            tokens.extend(event.tokens)
        else:
            final = event
    return "".join(text), tokens, final


def reply_tokens(gen) -> tuple[list[int], object]:
    """A Generation's (or any event stream's) token ids and its final event."""
    from engine.events import TextDelta

    tokens, final = [], None
    for event in gen:
        if isinstance(event, TextDelta):
            tokens.extend(event.tokens)
        else:
            final = event
    return tokens, final


def reference_greedy(runtime, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Plain greedy decoding straight on the runtime: tokens and each step's top-two logit gap."""
    runtime.reset()
    logits = runtime.forward(prompt, 0)[0]
    tokens, gaps = [], []
    for _ in range(n):
        top2 = np.partition(logits, -2)[-2:]
        gaps.append(float(top2[1] - top2[0]))
        t = int(np.argmax(logits))
        tokens.append(t)
        if t in runtime.special.end_of_turn:
            break
        logits = runtime.forward([t], runtime.n_past)[0]
    return tokens, gaps


def assert_plain_greedy(path, prompt: list[int], tokens: list[int], **options) -> None:
    """`tokens` are what plain greedy decoding of `path` (loaded afresh with `options`) writes after `prompt`, up to
    a near tie."""
    plain = load(path, **options)
    try:
        reference, gaps = reference_greedy(plain, prompt, len(tokens))
        assert_same_up_to_near_tie(reference, gaps, tokens)
    finally:
        plain.close()


def assert_same_up_to_near_tie(reference: list[int], gaps: list[float], other: list[int], ends=frozenset()) -> None:
    """`other` equals `reference`, or parts from it only where the reference had a near tie.

    The engine never reports the end-of-turn token, so a reference ending in one may be one longer.
    """
    for i in range(min(len(reference), len(other))):
        if reference[i] != other[i]:
            assert gaps[i] < NEAR_TIE, (
                f"runs part at token {i} ({reference[i]} vs {other[i]}) where the top two logits "
                f"differ by {gaps[i]:.3f}, not a near tie"
            )
            return
    trimmed = reference[:-1] if reference and reference[-1] in ends else reference
    assert len(other) in (len(reference), len(trimmed)), (len(reference), len(other))


@pytest.fixture(scope="session")
def smollm2_mlx_path(smollm2_path, tmp_path_factory):
    """The starter model converted once to an MLX folder, so both backends run the same weights."""
    from models.convert import convert_gguf_to_mlx

    return convert_gguf_to_mlx(smollm2_path, tmp_path_factory.mktemp("mlx") / "smollm2-mlx")


def load_mlx(path, **options):
    from runtimes.mlx_runtime import MlxRuntime

    return MlxRuntime(path, LoadOptions(**{"n_ctx": 2048, **options}))


@pytest.fixture(params=["llamacpp", "mlx"])
def any_runtime(request, smollm2_path):
    """The starter model on each backend (the MLX one converted from the same GGUF file)."""
    if request.param == "mlx":
        rt = load_mlx(request.getfixturevalue("smollm2_mlx_path"))
    else:
        rt = load(smollm2_path)
    yield rt
    rt.close()


@pytest.fixture
def worker():
    """The starter model on its engine thread, as the window and the server use it."""
    from app.wiring import start_worker

    w = start_worker("smollm2-135m-instruct", options=LoadOptions(n_ctx=1024))
    w.wait_ready(60)
    yield w
    w.close()


@pytest.fixture(autouse=True)
def collect_garbage_on_this_thread():
    """Once a window has turned automatic collection off (ui/gui_gc.py), the garbage of the tests after it is
    collected here, on the main thread, as the window's timer would."""
    yield
    import gc

    if not gc.isenabled():
        from ui.gui_gc import collect_due

        collect_due()


def pytest_sessionfinish(session, exitstatus):
    """Collect what is left while Qt's application object still exists (a Qt wrapper freed during interpreter
    shutdown, after it, can end an all-green run with a segfault)."""
    import gc

    gc.collect()


@pytest.fixture
def cpu_hog():
    """Two busy processes beside the test (a user's laptop, a shared CI runner): outcomes must not change."""
    import subprocess
    import sys

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield hogs
    for h in hogs:
        h.kill()
        h.wait()
