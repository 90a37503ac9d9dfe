"""GGUF files with each checked field broken in each type: a clear message, never an abort.

Loads that could abort run in a subprocess: the test asserts a clean exit code and a one-line message.
"""
from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from basics.errors import LanternError, ModelLoadError
from runtimes.runtime import LoadOptions

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=2)
def _reader(src: Path):
    import gguf

    return gguf.GGUFReader(src, "r")  # parsing the vocabulary takes seconds: once per source file


def rewrite(src: Path, dst: Path, changes: dict, *, drop: tuple[str, ...] = ()) -> Path:
    """Copy `src` with metadata keys changed ({key: (GGUFValueType, value)}) or dropped."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    import tqdm

    tqdm.tqdm.monitor_interval = 0  # no monitor thread left behind
    reader = _reader(src)
    writer = gguf.GGUFWriter(dst, arch="llama", endianess=reader.endianess)
    new = {k: MetadataDetails(t, v, sub_type=st) for k, (t, v, *rest) in changes.items() for st in [rest[0] if rest
                                                                                                      else None]}
    copy_with_new_metadata(reader, writer, new, list(drop))
    return dst


def cases():
    import gguf

    T = gguf.GGUFValueType
    broken = {}
    for key in ("llama.block_count", "llama.context_length", "llama.embedding_length", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.feed_forward_length", "llama.rope.dimension_count"):
        short = key.removeprefix("llama.")
        broken[f"{short}=string"] = {key: (T.STRING, "32")}
        broken[f"{short}=nan"] = {key: (T.FLOAT32, math.nan)}
        broken[f"{short}=float"] = {key: (T.FLOAT32, 2.0)}
        broken[f"{short}=bool"] = {key: (T.BOOL, True)}
        broken[f"{short}=array-of-strings"] = {key: (T.ARRAY, ["1", "2"], T.STRING)}
    broken.update({
        "block_count=0": {"llama.block_count": (T.UINT32, 0)},
        "block_count=2^31": {"llama.block_count": (T.UINT32, 1 << 31)},
        "block_count=2^63": {"llama.block_count": (T.UINT64, 1 << 63)},
        "block_count=-1": {"llama.block_count": (T.INT32, -1)},
        "context_length=0": {"llama.context_length": (T.UINT32, 0)},
        "nextn_predict_layers>block_count": {"llama.nextn_predict_layers": (T.UINT32, 31)},  # a GGML assertion
        "embedding_length=0": {"llama.embedding_length": (T.UINT32, 0)},
        "head_count_kv>head_count": {"llama.attention.head_count_kv": (T.UINT32, 10)},
        "head_count_kv-not-a-divisor": {"llama.attention.head_count_kv": (T.UINT32, 4)},
        "head_count-array-too-short": {"llama.attention.head_count": (T.ARRAY, [9, 9], T.UINT32)},
        "embedding-not-a-multiple-of-heads": {"llama.attention.head_count": (T.UINT32, 7)},
        "rope-dims-beyond-head": {"llama.rope.dimension_count": (T.UINT32, 4096)},
        "rms-eps=inf": {"llama.attention.layer_norm_rms_epsilon": (T.FLOAT32, math.inf)},
        "rope-base=nan": {"llama.rope.freq_base": (T.FLOAT32, math.nan)},
        "expert_used>expert_count": {"llama.expert_count": (T.UINT32, 2), "llama.expert_used_count": (T.UINT32, 3)},
        "alignment=3": {"general.alignment": (T.UINT32, 3)},
        "alignment=string": {"general.alignment": (T.STRING, "32")},
        "tokens-are-numbers": {"tokenizer.ggml.tokens": (T.ARRAY, [1, 2, 3], T.UINT32)},
        "scores-too-short": {"tokenizer.ggml.scores": (T.ARRAY, [0.0, 1.0], T.FLOAT32)},
        "bos-id=string": {"tokenizer.ggml.bos_token_id": (T.STRING, "1")},
        "tokenizer-model=number": {"tokenizer.ggml.model": (T.UINT32, 1)},
    })
    return broken


CASES = cases()


class BrokenFiles:
    """Each broken file is written when first asked for (each is a 100 MB copy of the starter model)."""

    def __init__(self, src: Path, folder: Path):
        self.src, self.folder = src, folder

    def __getitem__(self, name: str) -> Path:
        path = self.folder / f"{sorted([*CASES, 'block_count-missing', 'cut-off']).index(name)}.gguf"
        if path.exists():
            return path
        if name == "cut-off":
            data = self.src.read_bytes()
            path.write_bytes(data[: len(data) // 2])  # a cut-off download
        elif name == "block_count-missing":
            rewrite(self.src, path, {}, drop=("llama.block_count",))
        else:
            rewrite(self.src, path, CASES[name])
        return path

    def names(self) -> list[str]:
        return [*CASES, "block_count-missing", "cut-off"]


@pytest.fixture(scope="module")
def broken_files(smollm2_path, tmp_path_factory):
    return BrokenFiles(smollm2_path, tmp_path_factory.mktemp("broken-gguf"))


def test_every_broken_field_is_refused_with_a_message_naming_it(broken_files, tmp_path):
    from models.info import describe_model
    from models.library import ModelLibrary

    assert len(broken_files.names()) >= 50
    library = ModelLibrary(tmp_path / "data")
    for name in broken_files.names():
        path = broken_files[name]
        with pytest.raises(ModelLoadError, match="cannot be loaded|not a readable GGUF") as e:
            describe_model(path)
        assert "\n" not in str(e.value), name
        with pytest.raises(LanternError):
            library.import_path(path, name="x")
        assert library.find("x") is None, f"{name} was registered"
        if name not in KEPT:
            path.unlink()  # 100 MB each: keep the disk use small


KEPT = ["block_count=0", "block_count=2^31", "block_count=string", "context_length=nan", "head_count_kv-not-a-divisor",
        "cut-off"]


@pytest.mark.parametrize("case", KEPT)
def test_generate_and_doctor_say_why_in_one_line_and_exit_cleanly(case, broken_files, tmp_path):
    import json
    from dataclasses import asdict

    from models.library import LocalModel

    # A model registered before these checks existed (import would refuse it now).
    entry = LocalModel("broken", str(broken_files[case]), "llamacpp", "gguf", "Q4_1", 1, 1, "llama", True, "import",
                       linked=True)
    (tmp_path / "models.json").write_text(json.dumps({"version": 1, "models": [asdict(entry)]}))
    env = {**os.environ, "LANTERN_DATA_DIR": str(tmp_path)}
    for model in (str(broken_files[case]), "broken"):
        out = subprocess.run([sys.executable, "-m", "cli.main", "generate", "--model", model, "--max-tokens", "2", "Hi"],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert out.returncode == 2, (case, out.returncode, out.stderr[-2000:])
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("lantern: ") and "Traceback" not in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "cli.main", "doctor"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stdout.splitlines() if line.strip().startswith("broken:")]
    assert "cannot run:" in line, line


def test_an_abort_that_slips_past_the_checks_kills_only_the_test_load(broken_files, monkeypatch, tmp_path):
    """With the header checks switched off in this process, llama.cpp really aborts on block_count 0: in the
    child, which becomes a clear message here."""
    from runtimes import load_probe
    from runtimes.llamacpp import LlamaCppRuntime

    monkeypatch.setenv("LANTERN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("files.gguf_check.check_header", lambda *a, **k: None)
    path = broken_files["block_count=0"]
    with pytest.raises(ModelLoadError, match=r"crash \(SIG") as e:
        LlamaCppRuntime(path, LoadOptions(n_ctx=512))
    assert path.name in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "cache" / "loaded-models.json").exists()  # a failure is not remembered


def test_a_good_file_is_test_loaded_once_then_remembered(smollm2_path, tmp_path, monkeypatch):
    from runtimes import load_probe
    from runtimes.llamacpp import LlamaCppRuntime

    monkeypatch.setenv("LANTERN_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = load_probe.subprocess.Popen
    monkeypatch.setattr(load_probe.subprocess, "Popen", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(2):
        LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512)).close()
    assert len(calls) == 1
    LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=1024)).close()  # other options: tested again
    assert len(calls) == 2
    (tmp_path / "cache" / "loaded-models.json").write_text("[[[")  # a damaged cache costs one more test load
    LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512)).close()
    assert len(calls) == 3


def test_a_chatty_test_load_is_read_while_it_runs(smollm2_path, tmp_path, monkeypatch):
    """A child that writes more than a pipe holds (llama.cpp's logs, a backend's warnings) must not block until the
    timeout: both pipes are read while it runs (issue 32)."""
    from runtimes import load_probe
    from runtimes.llamacpp import LlamaCppRuntime

    monkeypatch.setenv("LANTERN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(load_probe, "TIMEOUT_S", 120.0)  # far past the load; the old code blocked until it
    chatty = ("import sys, runpy; sys.stdout.write('x' * 1_000_000); sys.stdout.flush(); "
              "sys.stderr.write('y' * 1_000_000); sys.stderr.flush(); "
              "runpy.run_module('runtimes.load_probe_child', run_name='__main__')")
    real = load_probe.subprocess.Popen
    monkeypatch.setattr(load_probe.subprocess, "Popen",
                        lambda cmd, **k: real([cmd[0], "-c", chatty, cmd[-1]], **k))
    LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512)).close()
    assert load_probe._key(smollm2_path, LoadOptions(n_ctx=512)) in load_probe._read(
        tmp_path / "cache" / "loaded-models.json")


def test_cache_sizes_and_errors_are_those_of_the_load_on_this_thread(smollm2_path):
    """Two loads at once (a chat model and the embedder) must not count each other's caches: llama.cpp's log is kept
    per thread (issue 32). Another thread logs a huge cache all through this load."""
    import threading

    from runtimes import llama_library as llamacpp
    from runtimes.llamacpp import LlamaCppRuntime

    alone = LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512))
    expected = alone.cache_bytes
    alone.close()
    stop = threading.Event()

    def other_load():
        while not stop.is_set():
            llamacpp._log_callback(2, b"llama_kv_cache: size = 9999.00 MiB", None)

    t = threading.Thread(target=other_load)
    t.start()
    try:
        for _ in range(3):
            rt = LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=512))
            assert rt.cache_bytes == expected > 0
            rt.close()
    finally:
        stop.set()
        t.join()
