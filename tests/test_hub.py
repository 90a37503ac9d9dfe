"""Search, listing and pulls with the real huggingface_hub client against a Hub on loopback."""
from __future__ import annotations

import socket
import threading

import pytest
from conftest import load, load_mlx
from hub_server import HubFile, HubRepo, HubServer, HubState

from models.hub import HubClient
from models.hub_errors import DownloadCancelled, HubError
from models.library import ModelLibrary

SMOL_REPO = "someone/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def hub(smollm2_path, gemma_path, smollm2_mlx_path):
    state = HubState()
    state.add(HubRepo(SMOL_REPO, {SMOL_FILE: HubFile(smollm2_path), "README.md": HubFile(smollm2_path, lfs=False)},
                      downloads=500))
    state.add(HubRepo("google/gemma-3-270m-GGUF", {"gemma-3-270m-Q4_K_M.gguf": HubFile(gemma_path)}, downloads=900))
    state.add(HubRepo("mlx-community/SmolLM2-135M-Instruct-4bit",
                      {p.name: HubFile(p) for p in smollm2_mlx_path.iterdir()}, tags=("mlx",), downloads=50))
    state.add(HubRepo("meta/locked-GGUF", {SMOL_FILE: HubFile(smollm2_path)}, gated=True))
    with HubServer(state) as server:
        yield server


@pytest.fixture
def library(tmp_path):
    return ModelLibrary(tmp_path / "data")


def client(hub, library, **kw) -> HubClient:
    return HubClient(endpoint=hub.endpoint, library=library, **kw)


def test_search_and_a_repositorys_models(hub, library):
    c = client(hub, library)
    found = c.search("", format="gguf")
    assert [m.repo for m in found] == ["google/gemma-3-270m-GGUF", SMOL_REPO, "meta/locked-GGUF"]  # by downloads
    assert [m.repo for m in c.search("smol", format="mlx")] == ["mlx-community/SmolLM2-135M-Instruct-4bit"]
    listing = c.listing(SMOL_REPO)
    choices, meta = listing.choices, listing.files
    assert [(ch.label, ch.files) for ch in choices] == [("Q4_1", (SMOL_FILE,))]
    assert choices[0].size_bytes == meta[SMOL_FILE]["size"] and len(meta[SMOL_FILE]["sha256"]) == 64
    assert listing.commit and meta["README.md"]["sha256"] is None
    (mlx,) = c.listing("mlx-community/SmolLM2-135M-Instruct-4bit").choices
    assert mlx.label == "mlx" and "config.json" in mlx.files


def test_a_pull_end_to_end_with_progress_loads_by_name(hub, library):
    events = []
    model = client(hub, library).pull(SMOL_REPO, on_progress=events.append)
    assert model.source == "pull" and model.repo == SMOL_REPO and model.quant == "Q4_1"
    assert events[-1].done_bytes == events[-1].total_bytes == model.size_bytes
    assert all(a.done_bytes <= b.done_bytes for a, b in zip(events, events[1:]))
    assert library.find(model.name) is not None
    rt = load(model.path)
    assert rt.n_vocab == 49152
    rt.close()
    assert hub.state.served[SMOL_FILE] == [(0, model.size_bytes)]


def test_an_mlx_repository_pulls_whole_and_loads(hub, library):
    model = client(hub, library).pull("mlx-community/SmolLM2-135M-Instruct-4bit", name="smol-mlx")
    assert (model.backend, model.format) == ("mlx", "mlx")
    rt = load_mlx(model.path)
    assert rt.special.bos == 1
    rt.close()


def test_a_dropped_connection_resumes_with_only_the_rest(hub, library, smollm2_path):
    size = smollm2_path.stat().st_size
    half = size // 2
    hub.state.drop_after = half
    c = client(hub, library)
    try:
        c.pull(SMOL_REPO)
    except HubError:
        pass  # huggingface_hub may resume by itself within the same pull, or give up: both are fine
    if library.find("smollm2-135m-instruct-gguf-q4_1") is None:
        c.pull(SMOL_REPO)
    served = hub.state.served[SMOL_FILE]
    assert served[0] == (0, half)
    # the second request asked only for the rest of what was saved (huggingface_hub writes in blocks)
    resumed = served[1][0]
    assert 0 < resumed <= half and served[1] == (resumed, size - resumed), served
    assert library.find("smollm2-135m-instruct-gguf-q4_1") is not None


def test_a_cancelled_pull_leaves_no_model_and_resumes_later(hub, library):
    cancel = threading.Event()

    def on_progress(p):
        if p.done_bytes > 10_000_000:
            cancel.set()

    c = client(hub, library)
    with pytest.raises(DownloadCancelled):
        c.pull(SMOL_REPO, on_progress=on_progress, cancel=cancel)
    assert library.find("smollm2-135m-instruct-gguf-q4_1") is None
    assert not (library.models_dir / "smollm2-135m-instruct-gguf-q4_1").exists()
    model = c.pull(SMOL_REPO)
    resumed_from = hub.state.served[SMOL_FILE][-1][0]
    assert resumed_from > 10_000_000 and library.find(model.name) is not None


def test_a_file_that_does_not_match_its_sha256_is_refused(hub, library):
    hub.state.corrupt.add(SMOL_FILE)
    with pytest.raises(HubError, match="sha256"):
        client(hub, library).pull(SMOL_REPO)
    assert library.find("smollm2-135m-instruct-gguf-q4_1") is None
    assert not list(library.root.rglob(SMOL_FILE))


def test_not_enough_disk_space_is_refused_before_downloading(hub, library):
    with pytest.raises(HubError, match="Not enough disk space"):
        client(hub, library, disk_free=lambda p: 1000).pull(SMOL_REPO)
    assert SMOL_FILE not in hub.state.served


def test_missing_gated_and_unreachable_hubs_say_so(hub, library):
    c = client(hub, library)
    with pytest.raises(HubError, match="No repository"):
        c.listing("nobody/nothing")
    with pytest.raises(HubError, match="gated.*hf auth login.*HF_TOKEN"):
        c.pull("meta/locked-GGUF")
    with pytest.raises(HubError, match="has no 'Q8_0'"):
        c.pull(f"{SMOL_REPO}:Q8_0")
    with socket.socket() as s:  # a port that accepts connections and never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        silent = HubClient(endpoint=f"http://127.0.0.1:{s.getsockname()[1]}", library=library, timeout=1)
        with pytest.raises(HubError, match="cannot be reached"):
            silent.listing(SMOL_REPO)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: connection refused
    with pytest.raises(HubError, match="cannot be reached.*search again when online"):
        HubClient(endpoint=f"http://127.0.0.1:{port}", library=library, timeout=1).search("x")


def test_an_offline_search_says_so_after_one_attempt_not_six(library):
    """huggingface_hub retries a search five times with back-off (30-40 s offline); one quick request first."""
    attempts, done = [], threading.Event()
    with socket.socket() as s:  # a Hub whose every connection drops at once
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.settimeout(0.1)

        def serve():
            while not done.is_set():
                try:
                    conn, _ = s.accept()
                except TimeoutError:
                    continue
                attempts.append(1)
                conn.close()

        server = threading.Thread(target=serve)
        server.start()
        try:
            with pytest.raises(HubError, match="cannot be reached.*search again when online"):
                HubClient(endpoint=f"http://127.0.0.1:{s.getsockname()[1]}", library=library, timeout=5).search("qwen")
        finally:
            done.set()
            server.join()
    assert len(attempts) == 1


def test_the_command_line_searches_lists_with_fit_and_pulls_with_a_progress_bar(hub, tmp_path):
    import os
    import subprocess

    from test_cli import LANTERN

    # the bar is what is checked: no TQDM_* setting from the environment may turn it off
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TQDM_")},
           "HF_ENDPOINT": hub.endpoint, "LANTERN_DATA_DIR": str(tmp_path / "data")}

    def lantern(*args):
        return subprocess.run([str(LANTERN), *args], capture_output=True, text=True, timeout=120, env=env)

    found = lantern("models", "search", "smol")
    assert found.returncode == 0 and SMOL_REPO in found.stdout and "gemma" not in found.stdout
    info = lantern("models", "info", SMOL_REPO, "--n-ctx", "2048")
    assert info.returncode == 0, info.stderr
    assert "Q4_1" in info.stdout and "0.10 GB" in info.stdout and "CPU only" in info.stdout
    assert "tool calls" in info.stdout and "generic" in info.stdout  # read from the template in the header
    pulled = lantern("models", "pull", SMOL_REPO, "--name", "smol-pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert "100%" in pulled.stderr and "MB/s" in pulled.stderr and "Pulled smol-pulled (Q4_1" in pulled.stdout  # tqdm
    assert "smol-pulled" in lantern("models", "list").stdout
    gated = lantern("models", "pull", "meta/locked-GGUF")
    assert gated.returncode == 2 and "hf auth login" in gated.stderr and "Traceback" not in gated.stderr


def test_a_split_gguf_is_joined_into_one_model_that_loads(hub, library, smollm2_path, tmp_path):
    import gguf

    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    reader = gguf.GGUFReader(str(smollm2_path))
    writer = gguf.GGUFWriter(str(parts_dir / "smol.gguf"), "llama", split_max_tensors=100)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        writer.add_key_value(field.name, field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    parts = sorted(parts_dir.glob("smol-*-of-00003.gguf"))
    assert len(parts) == 3
    hub.state.add(HubRepo("someone/smol-split-GGUF", {f"Q4_1/{p.name}": HubFile(p) for p in parts}))
    c = client(hub, library)
    (choice,) = c.listing("someone/smol-split-GGUF").choices
    assert choice.label == "Q4_1" and len(choice.files) == 3  # three parts, one choice
    model = c.pull("someone/smol-split-GGUF", name="smol-joined")
    assert model.path.endswith("smol.gguf") and model.size_bytes == smollm2_path.stat().st_size
    assert not list((library.models_dir / "smol-joined").rglob("*-of-*"))
    joined, original = load(model.path), load(smollm2_path)
    try:
        prompt = original.tokenize("The capital of France is", add_bos=True)
        assert (joined.forward(prompt, 0) == original.forward(prompt, 0)).all()
    finally:
        joined.close()
        original.close()


@pytest.mark.parametrize("name,quant", [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"), ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("model.IQ3_XS.gguf", "IQ3_XS"), ("Q8_0/Model-Q8_0.gguf", "Q8_0"), ("SmolLM2-135M.Q4_1.gguf", "Q4_1"),
    ("gemma-2-9b-it-f16.gguf", "F16"), ("Model-Q5_K_S.gguf", "Q5_K_S"),
])
def test_quant_labels_from_file_names(name, quant):
    from models.hub import QUANT

    assert QUANT.search("/" + name).group(1).upper() == quant


def test_a_download_runs_on_a_worker_and_can_be_cancelled_then_resumed(hub, library):
    from models.downloads import Download

    c = client(hub, library)
    seen = threading.Event()

    def on_progress(p):
        if p.done_bytes > 5_000_000:
            seen.set()

    first = Download(c, SMOL_REPO, on_progress=on_progress)
    assert seen.wait(60)
    first.cancel()
    with pytest.raises(DownloadCancelled):
        first.result(60)
    assert first.done and library.find("smollm2-135m-instruct-gguf-q4_1") is None
    second = Download(c, SMOL_REPO)
    model = second.result(120)
    assert model.name == "smollm2-135m-instruct-gguf-q4_1" and second.latest.done_bytes == model.size_bytes
    assert hub.state.served[SMOL_FILE][-1][0] > 0  # the second pull resumed
