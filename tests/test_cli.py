"""The `lantern` command as a user runs it (a real subprocess)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

LANTERN = Path(sys.executable).with_name("lantern")


def lantern(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANTERN), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def test_generate_streams_a_completion():
    r = lantern("generate", "--model", "smollm2-135m-instruct", "--max-tokens", "8", "--n-ctx", "512",
                "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "TTFT" in r.stderr and "finish: length" in r.stderr


def test_generate_is_reproducible_with_a_seed():
    args = ("generate", "--max-tokens", "12", "--temperature", "0.9", "--seed", "7", "--n-ctx", "512", "Once upon a time")
    first, second = lantern(*args), lantern(*args)
    assert first.returncode == 0 and first.stdout == second.stdout and first.stdout.strip()


def test_chat_reuses_the_cache_on_the_second_turn():
    r = lantern("chat", "--temperature", "0", "--max-tokens", "20", "--n-ctx", "1024",
                stdin="What is the capital of France?\nAnd of Italy?\n")
    assert r.returncode == 0, r.stderr
    figures = [line for line in r.stderr.splitlines() if "prompt tokens reused" in line]
    assert len(figures) == 2
    assert figures[0].startswith("[0/")
    reused = int(figures[1].strip("[").split("/")[0])
    assert reused > 30


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    cases = [
        (("generate", "--model", str(tmp_path / "missing.gguf"), "hi"), "not found"),
        (("generate", "--model", str(tmp_path), "hi"), "folder"),
        (("generate", "--model", "no-such-model", "hi"), "No model named"),
        (("generate", "--n-ctx", "-5", "hi"), "positive"),
        (("generate", "--n-ctx", "100000", "hi"), "beyond"),
        (("generate", "--max-tokens", "0", "hi"), "max_tokens"),
        (("generate", "--model", "gemma3-270m", "--backend", "mlx", "hi"), "MLX cannot read"),
        (("generate", "--backend", "mlx", "--threads", "2", "hi"), "--threads is for llama.cpp"),
        (("models", "convert", str(tmp_path / "missing.gguf"), "--to", "mlx"), "not found"),
        (("serve", "--host", "0.0.0.0"), "--api-key"),
        (("serve", "--model", str(tmp_path / "x.gguf")), "by name"),
        (("chat", "--backend", "remote"), "--remote-url"),
        (("generate", "--top-p", "7", "hi"), "top_p"),
    ]
    for args, message in cases:
        r = lantern(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_prompt_lookup_flags_reach_the_engine():
    prompt = "a b c d e f g h i j k l m n o p\na b c d e f g h i j k l m n o p\na b c d e f g h i j k l m n o p\na b"
    # A seed makes the draft lengths follow from the text alone (never from this machine's speed or load).
    on = lantern("generate", "--model", "gemma3-270m", "--max-tokens", "40", "--n-ctx", "512", "--draft-max", "8",
                 "--seed", "1", prompt)
    off = lantern("generate", "--model", "gemma3-270m", "--max-tokens", "40", "--n-ctx", "512", "--no-prompt-lookup",
                  prompt)
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert "drafted" in on.stderr and "accepted" in on.stderr
    assert "drafted" not in off.stderr
    bad = lantern("generate", "--draft-max", "0", "x")
    assert bad.returncode == 2 and "draft_max" in bad.stderr


def test_doctor_describes_this_machine_and_where_each_model_runs():
    r = lantern("doctor")
    assert r.returncode == 0, r.stderr
    assert "cores" in r.stdout and "GiB RAM" in r.stdout
    assert "llama-cpp-python 0.3.36" in r.stdout and "features: CPU" in r.stdout
    from machine.hardware import build_advice, detect
    from conftest import starter_label

    hw = detect()
    build, advice = build_advice(hw)
    assert f"build: {build}" in r.stdout  # CUDA (GPU offload) on an NVIDIA machine after scripts/setup, else CPU only
    assert (f"faster: {advice}" in r.stdout) if advice else "faster:" not in r.stdout
    # scripts/setup builds llama.cpp without OpenMP (a second computing thread would slow every decode ~3x)
    assert "OPENMP" not in r.stdout and "uses OpenMP" not in r.stdout
    # the count a model would compute with now, from the cores other programs leave free (machine/threads.py)
    threads = re.search(r"threads: (\d+) now, up to (\d+) \(other programs use [0-9.]+ of (\d+) cores", r.stdout)
    assert threads and 1 <= int(threads[1]) <= int(threads[2]) and int(threads[3]) >= 1, r.stdout
    assert "MLX: " in r.stdout
    assert re.search(r"document search: sqlite-vec v[0-9.]+ in SQLite 3\.", r.stdout)  # tests/test_packaging.py runs it in the bundle
    assert "images: llama.cpp's mtmd (media marker <__media__>)" in r.stdout
    lines = {line.split(":")[0].strip(): line for line in r.stdout.splitlines()}
    # where the starter runs here, as Lantern plans it in-process (CPU in CI; every layer on the GPU on a CUDA build)
    label = starter_label()
    assert lines["smollm2-135m-instruct"].strip().startswith(f"smollm2-135m-instruct: {label}: ")
    if label == "llamacpp (CPU)" and not hw.gpus:
        assert "llamacpp (CPU): no usable GPU" in lines["smollm2-135m-instruct"]
    assert re.search(r"; 4 slots, KV cache [0-9,]+ MiB f16 \(shared by its slots\)", lines["smollm2-135m-instruct"])
    # the starter's ChatML template takes no tools: it calls them in the generic JSON format
    assert lines["smollm2-135m-instruct"].endswith("tool calls: generic")
    # the KV cache type planned for: its figure follows (q8_0 is 34 bytes a block of 32 against f16's 64)
    f16 = int(re.search(r"KV cache ([0-9,]+) MiB f16", lines["smollm2-135m-instruct"])[1].replace(",", ""))
    q8 = lantern("doctor", "--kv-cache-type", "q8_0")
    q8_line = next(line for line in q8.stdout.splitlines() if line.strip().startswith("smollm2-135m-instruct:"))
    assert abs(int(re.search(r"KV cache ([0-9,]+) MiB q8_0", q8_line)[1].replace(",", "")) - f16 * 34 / 64) <= 1


def test_models_convert_writes_a_folder_that_chats_on_mlx(tmp_path):
    out = tmp_path / "smol-mlx"
    r = lantern("models", "convert", "smollm2-135m-instruct", "--to", "mlx", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    again = lantern("models", "convert", "smollm2-135m-instruct", "--to", "mlx", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    gen = lantern("generate", "--model", str(out), "--max-tokens", "4", "The capital of France is")
    assert gen.returncode == 0, gen.stderr
    assert "Paris" in gen.stdout and ", mlx," in gen.stderr


def test_models_list_import_and_rm(tmp_path, monkeypatch, smollm2_path):
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    listed = lantern("models", "list")
    assert listed.returncode == 0 and "smollm2-135m-instruct" in listed.stdout and "builtin" in listed.stdout
    imported = lantern("models", "import", str(smollm2_path), "--name", "mine")
    assert imported.returncode == 0 and "Imported mine (Q4_1" in imported.stdout
    assert "mine" in lantern("models", "list").stdout
    gen = lantern("generate", "--model", "mine", "--max-tokens", "3", "The capital of France is")
    assert gen.returncode == 0, gen.stderr
    removed = lantern("models", "rm", "mine")
    assert removed.returncode == 0 and "GB freed" in removed.stdout
    again = lantern("models", "rm", "mine")
    assert again.returncode == 2 and "No local model named 'mine'" in again.stderr


def test_a_preset_sets_the_sampling_and_the_system_prompt_and_flags_still_win(tmp_path):
    import json

    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text(json.dumps({"schema_version": 2, "temperature": 1.3, "presets": [
        {"name": "Pirate", "temperature": 0.0, "system_prompt": "Talk like a pirate in every reply you write. " * 8}]}))
    env = {"LANTERN_DATA_DIR": str(data)}

    def chat(*flags):
        r = subprocess.run([str(LANTERN), "chat", "--max-tokens", "4", "--n-ctx", "512", *flags], input="Hi\n",
                           capture_output=True, text=True, timeout=120, env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        figures = next(line for line in r.stderr.splitlines() if "prompt tokens reused" in line)
        return r.stderr, int(figures.split("/")[1].split()[0])  # the prompt's tokens

    plain_err, plain = chat("--temperature", "0")
    said, with_prompt = chat("--preset", "pirate")
    # the preset wins over the saved settings (temperature 1.3 there)
    assert "Preset Pirate: temperature 0.0, with its system prompt." in said and "Preset" not in plain_err
    assert with_prompt > plain + 30  # the preset's system prompt reached the prompt (the model's default is shorter)
    said, own_system = chat("--preset", "pirate", "--system", "Hi", "--temperature", "0.4")  # flags win
    assert own_system < with_prompt and "Preset Pirate: temperature 0.4." in said
    r = subprocess.run([str(LANTERN), "generate", "--preset", "nope", "hi"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, **env})
    assert r.returncode == 2 and "There is no preset 'nope'; there are Pirate, Balanced" in r.stderr
    assert "Traceback" not in r.stderr


def test_doctor_counts_a_chosen_draft_model_and_lists_the_compatible_ones(tmp_path, smollm2_path):
    from benchmarks.requantize import requantized

    from app.settings import ModelDefaults, Settings, save_settings
    from models.library import ModelLibrary

    data = tmp_path / "data"
    copy = requantized(smollm2_path, tmp_path / "smol-q4_0.gguf")
    ModelLibrary(data).import_path(copy, link=True, name="smol-q4_0")
    env = {**os.environ, "LANTERN_DATA_DIR": str(data)}

    def doctor() -> dict:
        r = subprocess.run([str(LANTERN), "doctor", "--n-ctx", "4096"], capture_output=True, text=True, timeout=120,
                           env=env)
        assert r.returncode == 0, r.stderr
        return {line.split(":")[0].strip(): line for line in r.stdout.splitlines()}

    plain = doctor()["smollm2-135m-instruct"]
    assert plain.endswith("can draft with: smol-q4_0") and "drafts with" not in plain
    assert "can draft with" not in doctor()["gemma3-270m"]  # another vocabulary
    save_settings(data / "settings.json", Settings(model_defaults={
        "smollm2-135m-instruct": ModelDefaults(draft_model="smol-q4_0")}))
    chosen = doctor()["smollm2-135m-instruct"]
    assert "drafts with smol-q4_0.gguf" in chosen
    kv = [int(re.search(r"KV cache ([0-9,]+) MiB", line)[1].replace(",", "")) for line in (plain, chosen)]
    # the same context for the draft model (its own architecture: the same cache again) beside the model's
    assert 1.9 * kv[0] <= kv[1] <= 2.1 * kv[0], (plain, chosen)
    save_settings(data / "settings.json", Settings(model_defaults={
        "smollm2-135m-instruct": ModelDefaults(draft_model="gone")}))
    assert "its draft model 'gone' is no longer in the library" in doctor()["smollm2-135m-instruct"]
