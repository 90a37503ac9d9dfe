"""Names from outside never decide where Lantern writes or deletes: import, pull and rm with hostile names.

Each case checks that nothing outside the data folder changed and nothing inside it was deleted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hub_server import HubFile, HubRepo, HubServer, HubState

from basics.errors import LanternError
from files.safe_paths import UnsafeName, check_name, check_relative, inside
from models.hub import HubClient, check_repo_id
from models.hub_errors import HubError
from models.library import LibraryError, ModelLibrary

REPO = "someone/Smol-GGUF"


def hostile_names(outside: Path) -> list[str]:
    return [
        "..", ".", "../x", "../../x", "../../../etc/passwd", str(outside), str(outside / "sub"), "a/b", "a\\b",
        "..\\..\\x", "C:\\x", "C:x", "", " ", " x", "x ", "x.", "x\x00y", "x\ny", "x\ty", "x\x7fy", "CON", "nul",
        "Com1", "lpt9.gguf", "aux.txt", "x" * 300, "x:y", "x|y", "<x>", "x?", "x*", 'x"y', "\ud800", "/",
        "~/x", "./x",
    ]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for f in [*filenames, *dirnames]:
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns if p.is_file() else 0)
    return out


@pytest.fixture
def world(tmp_path, smollm2_path):
    """A data folder with a model and some user data, beside an outside folder that must never change."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "precious.txt").write_text("the user's own file")
    (outside / "sub" / "x.gguf").write_text("not Lantern's")
    data = tmp_path / "lantern-data"
    library = ModelLibrary(data)
    model = tmp_path / "smol.gguf"
    shutil.copy(smollm2_path, model)
    library.import_path(model, name="kept")
    (data / "settings.json").write_text("{}")
    (data / "conversations.sqlite3").write_bytes(b"chats")
    return library, outside, model


def assert_untouched(library: ModelLibrary, outside: Path, before_out: dict, before_data: dict) -> None:
    assert snapshot(outside) == before_out, "something outside the data folder changed"
    after = snapshot(library.root)
    lost = [p for p in before_data if p not in after]
    assert not lost, f"deleted inside the data folder: {lost}"
    assert library.find("kept") is not None


def test_every_hostile_name_is_refused_on_import_and_rm(world):
    library, outside, model = world
    before_out, before_data = snapshot(outside), snapshot(library.root)
    names = hostile_names(outside)
    assert len(names) >= 20
    for name in names:
        with pytest.raises(LanternError):
            library.import_path(model, name=name)
        with pytest.raises(LanternError):
            library.import_path(model, name=name, link=True)
        with pytest.raises(LanternError):
            library.remove(name)
        assert_untouched(library, outside, before_out, before_data)
    assert [m.name for m in library.list() if m.source == "import"] == ["kept"]


def test_names_that_differ_only_in_case_collide(world):
    library, outside, model = world
    with pytest.raises(LibraryError, match="already exists"):
        library.import_path(model, name="KEPT")


def test_rm_deletes_only_what_lantern_made_inside_its_folder(world, tmp_path):
    library, outside, model = world
    # A linked import: the user's file stays.
    library.import_path(outside / ".." / "smol.gguf", name="linked", link=True)
    assert library.remove("linked") == 0 and model.is_file()
    # An index entry pointing outside (a hand edit, a damaged file) never makes rm delete there.
    import json

    index = json.loads(library.index.read_text())
    entry = dict(index["models"][0], name="evil", path=str(outside / "sub" / "x.gguf"))
    index["models"].append(entry)
    library.index.write_text(json.dumps(index))
    before_out = snapshot(outside)
    assert library.remove("evil") == 0
    assert snapshot(outside) == before_out
    # A model folder that is a link to elsewhere is not followed.
    library.import_path(model, name="victim")
    folder = library.models_dir / "victim"
    shutil.rmtree(folder)
    folder.symlink_to(outside)
    assert library.remove("victim") == 0
    assert snapshot(outside) == before_out
    assert library.remove("kept") > 0 and not (library.models_dir / "kept").exists()


def test_every_hostile_name_is_refused_on_pull_before_anything_is_written(world, smollm2_path):
    library, outside, _ = world
    state = HubState()
    state.add(HubRepo(REPO, {"smol.Q4_1.gguf": HubFile(smollm2_path)}))
    before_out, before_data = snapshot(outside), snapshot(library.root)
    with HubServer(state) as hub:
        client = HubClient(endpoint=hub.endpoint, library=library)
        for name in hostile_names(outside):
            with pytest.raises(LanternError):
                client.pull(REPO, name=name)
            assert_untouched(library, outside, before_out, before_data)
        assert "smol.Q4_1.gguf" not in hub.state.served  # refused before any download
        for repo in ["..", "../..", "a/../b", "/abs", "a/b/c", "a--b/c", "x\x00", ".hidden/x", "a/" + "b" * 200]:
            with pytest.raises(HubError, match="not a Hub repository id"):
                client.pull(repo)
            with pytest.raises(HubError):
                client.listing(repo)
        model = client.pull(REPO, name="fine")
        assert Path(model.path).parent == library.models_dir / "fine"


def test_hub_file_names_that_would_escape_are_refused_and_never_downloaded(world, smollm2_path, tmp_path):
    library, outside, _ = world
    state = HubState()
    evil = ["../../../x.gguf", "/abs/x.gguf", str(outside / "y.gguf"), "a/../../x.gguf", "x\x00.gguf",
            "..\\x.gguf", "C:/x.gguf", "CON.gguf"]
    state.add(HubRepo(REPO, {name: HubFile(smollm2_path) for name in evil}))
    before_out, before_data = snapshot(outside), snapshot(library.root)
    with HubServer(state) as hub:
        client = HubClient(endpoint=hub.endpoint, library=library)
        listing = client.listing(REPO)
        assert listing.choices == [] and sorted(listing.refused) == sorted(evil)
        for name in evil:
            with pytest.raises(HubError):
                client.pull(f"{REPO}:{name}")
        assert hub.state.served == {}
    assert_untouched(library, outside, before_out, before_data)
    assert not Path("/abs/x.gguf").exists() and not (tmp_path / "x.gguf").exists()


def test_the_name_rules_themselves(tmp_path):
    for good in ["smollm2-135m", "Qwen3.5-0.8B-Q4_K_M", "a", "x" * 120, "модель", "model.gguf"]:
        assert check_name(good) == good
    for bad in hostile_names(tmp_path):
        with pytest.raises(UnsafeName):
            check_name(bad)
    assert str(check_relative("Q8_0/model-00001-of-00002.gguf")) == "Q8_0/model-00001-of-00002.gguf"
    for bad in ["../x", "/x", "a//b", "a/./b", "C:/x", "a/" * 9 + "x"]:
        with pytest.raises(UnsafeName):
            check_relative(bad)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "in", tmp_path / "in" / "f") == (tmp_path / "in" / "f").resolve()
    for bad in [tmp_path / "in", tmp_path / "in" / ".." / "f", tmp_path / "in" / "link" / "f"]:
        with pytest.raises(UnsafeName):
            inside(tmp_path / "in", bad)
    assert check_repo_id("google/gemma-3-270m-GGUF")


def test_a_users_file_with_an_awkward_name_imports_under_a_safe_one(world, tmp_path):
    library, outside, model = world
    odd = tmp_path / "my:model?v2 .gguf"
    shutil.copy(model, odd)
    (m,) = library.import_path(odd)
    assert m.name == "my-model-v2" and Path(m.path) == library.models_dir / "my-model-v2" / "model.gguf"
    assert odd.is_file()  # the user's file stays where it was
