"""A Hub (or something posing as one) that sends malformed listings or files of the wrong size: clear errors,
no traceback, nothing registered, no partial file left behind. The real huggingface_hub client, on loopback."""
from __future__ import annotations

import json
import shutil

import pytest
from hub_server import COMMIT, HubFile, HubRepo, HubServer, HubState

from models.hub import HubClient
from models.hub_errors import HubError
from models.library import ModelLibrary

REPO = "someone/Smol-GGUF"
FILE = "smol.Q4_1.gguf"


def listing(siblings) -> bytes:
    return json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings}).encode()


MALFORMED = {
    "not json": b"<html>Welcome to the captive portal</html>",
    "a list": b"[1, 2, 3]",
    "siblings is a dict": listing({"rfilename": FILE}),
    "siblings is a string": listing("x.gguf"),
    "a sibling is a number": listing([1]),
    "rfilename is a number": listing([{"rfilename": 5, "size": 10}]),
    "size is a string": listing([{"rfilename": FILE, "size": "big"}]),
    "size is negative": listing([{"rfilename": FILE, "size": -1}]),
    "size is a float": listing([{"rfilename": FILE, "size": 1.5}]),
    "sha256 is not hex": listing([{"rfilename": FILE, "size": 10, "lfs": {"size": 10, "sha256": "zz"}}]),
    "lfs is a string": listing([{"rfilename": FILE, "size": 10, "lfs": "yes"}]),
    "the same file twice": listing([{"rfilename": FILE, "size": 1}, {"rfilename": FILE, "size": 1}]),
    "deeply nested": b"[" * 100000 + b"]" * 100000,
}


@pytest.fixture
def library(tmp_path):
    return ModelLibrary(tmp_path / "data")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_listing_is_a_clear_error(case, library):
    state = HubState(raw_info={REPO: MALFORMED[case]})
    with HubServer(state) as hub:
        client = HubClient(endpoint=hub.endpoint, library=library)
        with pytest.raises(HubError, match="malformed|twice"):
            client.listing(REPO)
        with pytest.raises(HubError):
            client.pull(REPO)
    assert library.list() == [m for m in library.list() if m.source == "builtin"]


@pytest.mark.parametrize("announced", ["larger", "smaller"])
def test_a_file_of_another_size_than_announced_is_refused_and_removed(announced, library, smollm2_path):
    real = smollm2_path.stat().st_size
    size = real + 4096 if announced == "larger" else real - 4096
    state = HubState()
    state.add(HubRepo(REPO, {FILE: HubFile(smollm2_path, announce_size=size)}))
    with HubServer(state) as hub:
        with pytest.raises(HubError, match=rf"{size}") as e:
            HubClient(endpoint=hub.endpoint, library=library).pull(REPO)
    assert str(size) in str(e.value) and ("larger" in str(e.value) or str(real) in str(e.value))
    staging = library.root / "downloads"
    assert not [p for p in staging.rglob("*") if p.is_file()], "a partial file was left behind"
    assert library.find("smol-gguf-q4_1") is None


def test_a_file_without_sha256_is_checked_by_its_git_blob_id(library, smollm2_path, tmp_path):
    small = tmp_path / "model.gguf"
    shutil.copy(smollm2_path, small)
    state = HubState()
    state.add(HubRepo(REPO, {FILE: HubFile(small, lfs=False)}))
    with HubServer(state) as hub:
        client = HubClient(endpoint=hub.endpoint, library=library)
        model = client.pull(REPO, name="by-blob")
        assert client.unchecked == [] and library.find("by-blob") == model
        state.repos[REPO].files[FILE].blob_id = "0" * 40  # the listing and the bytes disagree
        with pytest.raises(HubError, match="git blob id"):
            client.pull(REPO, name="wrong-blob")
        assert library.find("wrong-blob") is None
        state.repos[REPO].files[FILE].blob_id = None  # no hash at all: pulled, and said to be unchecked
        model = client.pull(REPO, name="unchecked")
        assert client.unchecked == [FILE]
