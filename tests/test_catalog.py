"""The shipped catalog is well formed and current, its figures are read from the Hub (the real huggingface_hub
client against a Hub on loopback) on a first look and by `lantern models catalog refresh`, and the fit check and
the speed estimate place its models on machines described in tests."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest
from hub_server import HubFile, HubRepo, HubServer, HubState
from tiny_models import write_lfm2, write_qwen35

from machine.hardware import GPU, Hardware
from models.catalog import FIGURES_FILE, CatalogError, bundled_text, load_catalog, read_from_hub, remember_figures
from models.fit import check_fit
from models.hub import HubClient
from models.hub_errors import HubError
from models.info import describe_model
from models.library import ModelLibrary
from models.speed import estimate_tokens_per_s

GiB = 1 << 30
# The families the catalog must carry (the models people pick in late 2026), and each one's tool-call format.
FAMILIES = {"qwen3.5": "qwen3-coder", "qwen3.6": "qwen3-coder", "qwen3.8": "qwen3-coder", "gemma-4": "generic",
            "gpt-oss": "harmony", "ministral-3": "mistral-args", "glm": "hermes", "nemotron": "qwen3-coder",
            "lfm2.5": "generic", "granite-4.0": "hermes", "devstral": "mistral-args"}


def test_the_catalog_carries_current_families_with_their_formats():
    entries = load_catalog()
    chat = [e for e in entries if e.kind == "chat"]
    assert {e.family for e in chat} == set(FAMILIES)
    for e in chat:
        assert e.tools == FAMILIES[e.family], e.name
    assert {"embeddinggemma-300m", "nomic-embed-text-v1.5", "bge-m3"} <= {e.name for e in entries if e.kind == "embedding"}
    for backend in ("llamacpp", "mlx"):
        sizes = sorted(e.params_b for e in chat if e.backend == backend)
        assert sizes[0] <= 1.2 and sizes[-1] >= 20, (backend, sizes)  # about 0.8B to about 35B
    for e in entries:
        # 4-bit weights: roughly 0.5 to 0.8 bytes a parameter (embeddings and mixed quants vary); Q8_0 embedders 1.1
        high = 1.15 if e.quant == "Q8_0" else 0.8
        assert 0.45 * e.params_b * 1e9 < e.size_bytes < high * e.params_b * 1e9 + 2e8, e.name
        # estimates until `lantern models catalog refresh` reads the file (then "COMMIT DATE"): either is valid data,
        # so running the refresh, as the README tells maintainers to, leaves the suite green (issue 32)
        assert e.approximate == (e.checked == "")
        if e.checked:
            commit, date = e.checked.split(" ", 1)
            assert len(commit) >= 7 and all(c in "0123456789abcdef" for c in commit) and date[:2] == "20", e.checked
        assert e.spec() == (f"{e.repo}:{e.files[0]}" if e.format == "gguf" else e.repo)
    by_name = {e.name: e for e in entries}
    # the layer kinds: Qwen3.5 keeps one full-attention layer in four and a recurrent state; Gemma 4 slides
    qwen = by_name["qwen3.5-9b"].model_info()
    assert qwen.state_bytes > 0 and qwen.kv_bytes(32768) - qwen.kv_bytes(16384) == 16384 * 8 * 4 * 256 * 4
    gemma = by_name["gemma-4-12b"].model_info()
    assert gemma.window == 1024 and gemma.kv_bytes(131072) < 0.3 * 48 * 8 * 256 * 4 * 131072
    assert by_name["gpt-oss-20b"].quant == "MXFP4" and by_name["gpt-oss-20b"].active_b < 4


@pytest.mark.parametrize("change,why", [
    (dict(backend="mlx"), "backend and format"),
    (dict(repo="no-owner"), "owner/name"),
    (dict(files=["model.bin"]), ".gguf"),
    (dict(files=["../../etc/x.gguf"]), "names a folder"),
    (dict(size_bytes=10), "size_bytes"),
    (dict(size_bytes="big"), "wrong type"),
    (dict(reasoning="yes"), "wrong type"),
    (dict(name="Has Spaces"), "lowercase"),
    (dict(kind="audio"), "chat or embedding"),
    (dict(active_b=100.0), "params_b"),
    (dict(window=512), "window and its layers"),
    (dict(extra=1), "missing or unknown"),
])
def test_malformed_entries_are_caught(change, why):
    entry = json.loads(bundled_text())["models"][0]
    with pytest.raises(CatalogError, match=why):
        load_catalog(json.dumps({"models": [{**entry, **change}]}))
    with pytest.raises(CatalogError, match="unique"):
        load_catalog(json.dumps({"models": [entry, entry]}))
    with pytest.raises(CatalogError, match="list of models"):
        load_catalog(json.dumps([entry]))


# -- figures read from the Hub ---------------------------------------------------------------------

LFM_REPO, LFM_FILE = "LiquidAI/LFM2.5-1.2B-Instruct-GGUF", "LFM2.5-1.2B-Instruct-Q4_K_M.gguf"


@pytest.fixture(scope="module")
def tiny(smollm2_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return {"lfm2": write_lfm2(smollm2_path, folder / "lfm2.gguf"),
            "qwen35": write_qwen35(smollm2_path, folder / "qwen35.gguf", mtp=True)}  # with an MTP block


@pytest.fixture
def hub(tiny, smollm2_mlx_path):
    """The catalog's LFM2.5 repository, serving a tiny random LFM2 under the real file name (and an MLX one)."""
    state = HubState()
    state.add(HubRepo(LFM_REPO, {LFM_FILE: HubFile(tiny["lfm2"])}))
    state.add(HubRepo("unsloth/Qwen3.5-0.8B-GGUF", {"Qwen3.5-0.8B-Q4_K_M.gguf": HubFile(tiny["qwen35"])}))
    state.add(HubRepo("mlx-community/LFM2.5-1.2B-Instruct-4bit",
                      {p.name: HubFile(p) for p in smollm2_mlx_path.iterdir()}, tags=("mlx",)))
    with HubServer(state) as server:
        yield server


def entry(name: str):
    return next(e for e in load_catalog() if e.name == name)


def test_a_first_look_reads_the_files_figures_and_keeps_them(hub, tiny, tmp_path):
    client = HubClient(endpoint=hub.endpoint, library=ModelLibrary(tmp_path / "data"))
    bundled = entry("lfm2.5-1.2b-instruct")
    checked = read_from_hub(client, bundled)
    local = describe_model(tiny["lfm2"])
    assert not checked.approximate and len(checked.checked.split()[0]) == 12
    assert (checked.size_bytes, checked.n_layers, checked.kv_bytes_per_token, checked.state_bytes) == \
        (local.size_bytes, local.n_layers, local.kv_bytes_per_token, local.state_bytes)
    assert checked.architecture == "lfm2" and checked.tools == local.tool_format
    assert (checked.title, checked.repo, checked.license) == (bundled.title, bundled.repo, bundled.license)
    remember_figures(tmp_path / "data", checked)
    again = {e.name: e for e in load_catalog(figures_dir=tmp_path / "data")}
    assert again["lfm2.5-1.2b-instruct"] == checked and again["qwen3.5-4b"].approximate
    mlx = read_from_hub(client, entry("lfm2.5-1.2b-instruct-mlx"))  # an MLX repository: its config.json
    assert not mlx.approximate and mlx.architecture == "llama" and mlx.n_layers == 30
    with pytest.raises(HubError, match="No repository 'ggml-org/gemma-4-E2B-it-GGUF'"):
        read_from_hub(client, entry("gemma-4-e2b"))  # not on this Hub
    renamed = dataclasses.replace(bundled, files=("LFM2.5-1.2B-Instruct-Q8_0.gguf",))
    with pytest.raises(HubError, match="has no LFM2.5-1.2B-Instruct-Q8_0.gguf .*out of date"):
        read_from_hub(client, renamed)


def test_kept_figures_count_only_when_whole_and_for_the_same_file(tmp_path):
    folder = tmp_path / "data"
    e = dataclasses.replace(entry("qwen3.5-4b"), size_bytes=2_000_000_000, checked="0123456789ab 2026-11-23")
    remember_figures(folder, e)
    assert {x.name: x for x in load_catalog(figures_dir=folder)}["qwen3.5-4b"].size_bytes == 2_000_000_000
    saved = json.loads((folder / FIGURES_FILE).read_text())
    for bad in ({"size_bytes": -5}, {"size_bytes": True}, {"repo": "someone/else"}, {"checked": ""},
                {"files": ["other.gguf"]}, {"window": 512}):  # the last: a window without its layers
        (folder / FIGURES_FILE).write_text(json.dumps({"qwen3.5-4b": {**saved["qwen3.5-4b"], **bad}}))
        assert {x.name: x for x in load_catalog(figures_dir=folder)}["qwen3.5-4b"].approximate, bad
    (folder / FIGURES_FILE).write_text('{"qwen3.5-4b": [1, 2')  # damaged: moved aside, the catalog still loads
    assert all(x.approximate for x in load_catalog(figures_dir=folder))
    assert not (folder / FIGURES_FILE).exists() and list(folder.glob(FIGURES_FILE + ".damaged-*"))


def test_refresh_rewrites_a_catalog_file_from_the_hub_and_keeps_what_it_cannot_read(hub, tiny, tmp_path):
    from test_cli import LANTERN

    bundled = json.loads(bundled_text())
    wanted = {"lfm2.5-1.2b-instruct", "qwen3.5-0.8b", "gemma-4-e2b"}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({**bundled, "models": [m for m in bundled["models"] if m["name"] in wanted]}))
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "LANTERN_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(LANTERN), "models", "catalog", "refresh", "--out", str(path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr  # one entry is not on this Hub
    assert "gemma-4-e2b: kept as it was" in done.stderr and "Traceback" not in done.stderr
    assert "2 entries read from the Hub, 1 kept as they were (gemma-4-e2b)" in done.stdout
    after = {e.name: e for e in load_catalog(path.read_text())}
    assert after["gemma-4-e2b"].approximate
    qwen = describe_model(tiny["qwen35"])
    assert not after["qwen3.5-0.8b"].approximate and after["qwen3.5-0.8b"].state_bytes == qwen.state_bytes
    assert after["qwen3.5-0.8b"].kv_bytes_per_token == qwen.kv_bytes_per_token
    # MTP heads: read from the file's header (bundled entries: not known until then)
    assert (after["qwen3.5-0.8b"].mtp_layers, after["lfm2.5-1.2b-instruct"].mtp_layers) == (1, 0)
    assert after["gemma-4-e2b"].mtp_layers == -1
    shown = subprocess.run([str(LANTERN), "models", "catalog"], capture_output=True, text=True, timeout=120, env=env)
    assert shown.returncode == 0 and "qwen3.5-9b" in shown.stdout and "≈" in shown.stdout and "tok/s" in shown.stdout


# -- fit and speed ---------------------------------------------------------------------------------

def machine(**kw) -> Hardware:
    base = dict(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=32 * GiB, ram_available_bytes=24 * GiB,
                llamacpp_version="0.3.36")
    return Hardware(**{**base, **kw})


def info(name: str):
    return entry(name).model_info()


def test_fit_on_gpu_partly_cpu_only_or_not_at_all():
    rtx = machine(gpus=(GPU("NVIDIA GeForce RTX 4060", 8 * GiB, 7 * GiB),), llamacpp_gpu_offload=True,
                  llamacpp_gpu_backend="CUDA")
    small, big = info("qwen3.5-4b"), info("gemma-4-31b")
    assert check_fit(rtx, small, n_ctx=8192).verdict == "gpu"
    part = check_fit(rtx, big, n_ctx=8192)
    assert part.verdict == "partial" and 0 < part.n_gpu_layers < 60 and "layers on the GPU" in part.badge
    laptop = machine(ram_total_bytes=8 * GiB, ram_available_bytes=6 * GiB)
    assert check_fit(laptop, small, n_ctx=4096).verdict == "cpu"
    no = check_fit(laptop, big, n_ctx=4096)
    assert no.verdict == "no" and no.need_bytes > 8 * GiB and "RAM" in no.summary
    mac = machine(os="Darwin", arch="arm64", apple_silicon=True, ram_total_bytes=16 * GiB, ram_available_bytes=12 * GiB)
    assert check_fit(mac, info("qwen3.5-9b-mlx"), n_ctx=8192).verdict == "gpu"
    assert check_fit(mac, big, n_ctx=32768).verdict == "no"
    # a longer context needs more, but Gemma 4's sliding layers stop at their window
    ministral, gemma = info("ministral-3-8b-instruct"), info("gemma-4-12b")
    grow = check_fit(laptop, ministral, n_ctx=131072).need_bytes - check_fit(laptop, ministral, n_ctx=4096).need_bytes
    assert grow == ministral.kv_bytes_per_token * (131072 - 4096)
    assert check_fit(laptop, gemma, n_ctx=131072).need_bytes - check_fit(laptop, gemma, n_ctx=4096).need_bytes \
        == gemma.kv_bytes_per_token * (131072 - 4096)  # only the full-attention layers grow


def test_the_speed_estimate_follows_bandwidth_and_active_parameters():
    rtx = machine(gpus=(GPU("NVIDIA GeForce RTX 4090", 24 * GiB, 23 * GiB),), llamacpp_gpu_offload=True,
                  llamacpp_gpu_backend="CUDA")
    laptop = machine(cpu_cores=4)
    dense, moe = entry("qwen3.5-9b"), entry("qwen3.6-35b-a3b")

    def speed(hw, e, verdict, layers=0):
        return estimate_tokens_per_s(hw, size_bytes=e.size_bytes, params_b=e.params_b, active_b=e.active_b,
                                     verdict=verdict, n_gpu_layers=layers, n_layers=e.n_layers)

    on_gpu, on_cpu = speed(rtx, dense, "gpu"), speed(laptop, dense, "cpu")
    assert on_gpu == pytest.approx(1008e9 * 0.65 / dense.size_bytes) and on_gpu > 10 * on_cpu
    # a mixture of experts reads only its active experts: 35B-A3B writes faster than the dense 9B on a CPU
    assert speed(laptop, moe, "cpu") > speed(laptop, dense, "cpu")
    half = speed(rtx, dense, "partial", layers=dense.n_layers // 2)
    assert on_cpu < half < on_gpu and speed(rtx, dense, "no") == 0
    m3 = machine(os="Darwin", arch="arm64", apple_silicon=True, cpu_name="Apple M3 Max")
    m1 = machine(os="Darwin", arch="arm64", apple_silicon=True, cpu_name="Apple M1")
    assert speed(m3, dense, "gpu") == pytest.approx(speed(m1, dense, "gpu") * 400 / 68)


def test_descriptions_say_only_what_the_catalog_knows():
    from models.catalog import load_catalog
    from models.catalog_words import description, license_in_words, tools_in_words

    for e in load_catalog():
        text = description(e)
        assert f"{e.params_b:g}B-parameter" in text
        assert ("thinks before it answers" in text) == e.reasoning and ("reads images" in text) == e.vision
        assert tools_in_words(e) and license_in_words(e)



def test_a_small_model_of_the_family_is_suggested_as_a_draft_model():
    from models.catalog import load_catalog
    from models.catalog_words import draft_in_words, draft_suggestion

    catalog = load_catalog()
    by_name = {e.name: e for e in catalog}
    assert draft_suggestion(by_name["gemma-4-31b"], catalog).name == "gemma-4-e2b"  # the smallest of its family
    assert draft_suggestion(by_name["ministral-3-14b-instruct"], catalog).name.startswith("ministral-3-3b")
    assert draft_suggestion(by_name["gemma-4-e4b"], catalog) is None  # e2b is more than a quarter of e4b
    # Qwen3.5's small models have DeltaNet layers: they draft too, their state put back after each draft
    assert draft_suggestion(by_name["qwen3.5-9b"], catalog).name == "qwen3.5-0.8b"
    assert draft_suggestion(by_name["qwen3.5-4b"], catalog).name == "qwen3.5-0.8b"
    assert draft_suggestion(by_name["qwen3.5-9b-mlx"], catalog) is None  # MLX: not offered (GGUF drafts only)
    assert draft_suggestion(by_name["bge-m3"], catalog) is None  # an embedding model writes no text
    for e in catalog:
        found = draft_suggestion(e, catalog)
        assert found is None or (found.family == e.family and found.params_b * 4 <= e.params_b)
    assert draft_in_words(by_name["gemma-4-31b"], catalog).startswith("gemma-4-e2b (5.1B, same family)")
    assert draft_in_words(by_name["gpt-oss-20b"], catalog) == "none in the catalog"


def test_mtp_heads_are_marked_once_known_and_old_saved_figures_still_count(tmp_path):
    from models.catalog_words import description, mtp_in_words

    bundled = entry("qwen3.5-9b")
    assert bundled.mtp_layers == -1 and "not known" in mtp_in_words(bundled)
    assert "multi-token-prediction" not in description(bundled)
    known = dataclasses.replace(bundled, mtp_layers=1, checked="abcdef123456 2026-12-06")
    assert mtp_in_words(known).startswith("yes (1 block)") and "multi-token-prediction" in description(known)
    assert mtp_in_words(dataclasses.replace(known, mtp_layers=0)) == "no"
    gemma = entry("gemma-4-31b")  # Gemma 4's heads are a model of their own, its assistant
    assert "Google's gemma-4-31B-it-assistant" in mtp_in_words(gemma) and "assistant" in description(gemma)
    remember_figures(tmp_path, known)
    assert {e.name: e for e in load_catalog(figures_dir=tmp_path)}["qwen3.5-9b"].mtp_layers == 1
    saved = json.loads((tmp_path / "catalog-figures.json").read_text())
    del saved["qwen3.5-9b"]["mtp_layers"]  # figures saved by a Lantern before this one
    (tmp_path / "catalog-figures.json").write_text(json.dumps(saved))
    again = {e.name: e for e in load_catalog(figures_dir=tmp_path)}["qwen3.5-9b"]
    assert not again.approximate and again.mtp_layers == -1  # the other figures count; the heads: not known
    for bad in ("1", True, -5, 10 ** 6):
        saved["qwen3.5-9b"]["mtp_layers"] = bad
        (tmp_path / "catalog-figures.json").write_text(json.dumps(saved))
        assert {e.name: e for e in load_catalog(figures_dir=tmp_path)}["qwen3.5-9b"].mtp_layers == -1
