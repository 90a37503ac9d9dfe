"""Fitting a model to a GPU: every slot's cache counts, a switch measures after the old model is freed, and the
first test load never needs a second full cache. All on described hardware, so they run on any machine."""
from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from machine.hardware import GPU, Hardware
from models.choice import choose_backend
from models.fit import check_fit
from models.info import ModelInfo

GiB = 1 << 30

# A Qwen3.5-like hybrid: 9 GiB of weights, 40 layers, a small attention cache, and 150 MiB of recurrent state that
# every slot keeps for itself (plus its rollback snapshots, counted in state_bytes).
HYBRID = ModelInfo(Path("hybrid.gguf"), "gguf", 9 * GiB, 40, 262144, 10 * 4 * 256 * 2, "qwen35", "Q4_K",
                   output_bytes=GiB // 2, state_bytes=150 << 20)
# A Gemma-like model whose sliding-window layers keep a window per slot.
WINDOWED = ModelInfo(Path("swa.gguf"), "gguf", 7 * GiB, 48, 131072, 8 * 8 * 256 * 2, "gemma3", "Q4_K",
                     output_bytes=GiB, window=4096, window_bytes_per_token=40 * 8 * 256 * 2)


def nvidia(free_gib: float) -> Hardware:
    return Hardware(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=64 * GiB, ram_available_bytes=60 * GiB,
                    gpus=(GPU("NVIDIA GeForce RTX 4070", 12 * GiB, int(free_gib * GiB)),), llamacpp_version="0.3.36",
                    llamacpp_gpu_offload=True, llamacpp_gpu_backend="CUDA")


def test_gpu_layers_count_every_slots_states_and_windows():
    for model, n_ctx in ((HYBRID, 8192), (WINDOWED, 32768)):
        one = choose_backend(nvidia(10.5), model, n_ctx=n_ctx)
        eight = choose_backend(nvidia(10.5), model, n_ctx=n_ctx, slots=8)
        assert one.n_gpu_layers == -1, one.reason  # alone it fits whole
        assert 0 < eight.n_gpu_layers < model.n_layers, eight.reason  # eight slots' states and windows do not
        assert "layers on the GPU" in eight.reason
        # the figure the choice used is the one fit and doctor show
        need = model.size_bytes + model.kv_bytes(n_ctx, slots=8)
        assert f"{need / GiB:.1f} GiB" in eight.reason
    assert "KV cache for 4 slots" in choose_backend(nvidia(11.5), WINDOWED, n_ctx=8192, slots=4).reason


def test_fit_plans_the_layers_with_the_slots_it_is_asked_about():
    one = check_fit(nvidia(10.5), HYBRID, n_ctx=8192)
    eight = check_fit(nvidia(10.5), HYBRID, n_ctx=8192, slots=8)
    assert one.verdict == "gpu" and eight.verdict == "partial"
    assert eight.n_gpu_layers == choose_backend(nvidia(10.5), HYBRID, n_ctx=8192, slots=8).n_gpu_layers


def test_a_switch_plans_the_new_model_after_the_old_one_is_freed(monkeypatch, smollm2_path):
    """ModelHost retires the old worker before opening the new one, and plan_load waits for it to free its model
    before it measures the machine: the free memory it fits to never includes what the old model holds."""
    import app.wiring as wiring
    from app.model_host import ModelHost

    release, freed, seen = threading.Event(), threading.Event(), []

    class Old:
        def close(self, timeout=30.0):
            release.wait(30)  # queued replies still running
            freed.set()

    import machine.hardware

    real = machine.hardware.detect

    def detect():
        seen.append(freed.is_set())
        return real()

    monkeypatch.setattr(machine.hardware, "detect", detect)

    def open_worker(name):
        threading.Timer(0.2, release.set).start()  # the old worker's last reply ends some time later
        return wiring.plan_load(smollm2_path)

    host = ModelHost(open_worker)
    host.worker, host.name = Old(), "old"
    plan = host.use("new")
    assert seen == [True] and plan.path == smollm2_path
    host._closing[-1].join(10)


def test_the_first_test_load_uses_a_small_context(monkeypatch, smollm2_path, tmp_path):
    """The load probe's child checks that the file loads and computes with a context of 512 cells, whatever the
    context asked for: on a GPU it never holds a second full-size cache."""
    from runtimes import load_probe
    from runtimes.runtime import LoadOptions

    monkeypatch.setattr(load_probe, "_cache_file", lambda: tmp_path / "loaded.json")
    specs, real = [], subprocess.Popen

    def popen(cmd, *a, **kw):
        specs.append(json.loads(cmd[-1]))
        return real(cmd, *a, **kw)

    monkeypatch.setattr(load_probe.subprocess, "Popen", popen)
    load_probe.verify_in_child(smollm2_path, LoadOptions(n_ctx=8192, n_batch=2048))
    assert specs and specs[0]["n_ctx"] == 512 and specs[0]["n_batch"] == 512
    assert load_probe._key(smollm2_path, LoadOptions(n_ctx=8192, n_batch=2048)) in load_probe._read(tmp_path / "loaded.json")
