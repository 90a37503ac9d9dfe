"""The local model library: built-in models, imports (copy or link), names, deletes."""
from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
from conftest import load

from models.library import LibraryError, ModelLibrary, resolve_model


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    return ModelLibrary()


def test_the_built_in_models_are_listed_with_what_their_files_say(library):
    models = {m.name: m for m in library.list()}
    smol = models["smollm2-135m-instruct"]
    assert (smol.backend, smol.format, smol.quant, smol.architecture) == ("llamacpp", "gguf", "Q4_1", "llama")
    assert smol.chat_template and smol.context_length == 8192 and smol.source == "builtin"
    gemma = models["gemma3-270m"]
    assert gemma.quant == "Q4_K_M" and not gemma.chat_template
    with pytest.raises(LibraryError, match="built into Lantern"):
        library.remove("smollm2-135m-instruct")


def test_an_imported_copy_loads_by_name_and_removing_it_frees_its_space(library, smollm2_path, tmp_path):
    src = tmp_path / "My Model.gguf"
    shutil.copy(smollm2_path, src)
    # the same bytes as the built-in starter: an import may go on, but the library can say so first
    assert library.same_file_as(src) == "smollm2-135m-instruct" and library.same_file_as(smollm2_path)
    other = tmp_path / "other.gguf"
    other.write_bytes(src.read_bytes()[:-1] + bytes([src.read_bytes()[-1] ^ 1]))  # same size, one bit apart
    assert library.same_file_as(other) is None and library.same_file_as(tmp_path / "nothing.gguf") is None
    (m,) = library.import_path(src)
    assert m.name == "my-model" and m.source == "import" and not m.linked
    assert library.root in resolve_model("my-model").parents  # a copy inside the data folder
    rt = load(resolve_model("my-model"))
    assert rt.n_vocab == 49152
    rt.close()
    with pytest.raises(LibraryError, match="already exists"):
        library.import_path(src)
    assert library.remove("my-model") == src.stat().st_size
    assert not any((library.root / "models").iterdir()) and library.find("my-model") is None
    assert src.exists()


def test_a_linked_import_leaves_the_users_file_where_it_is(library, smollm2_path):
    (m,) = library.import_path(smollm2_path, link=True, name="smol-link")
    assert m.linked and m.path == str(smollm2_path.resolve())
    assert library.remove("smol-link") == 0 and smollm2_path.exists()


def test_folders_of_gguf_files_and_mlx_folders_import(library, smollm2_path, smollm2_mlx_path, tmp_path):
    folder = tmp_path / "ggufs"
    folder.mkdir()
    shutil.copy(smollm2_path, folder / "a.gguf")
    shutil.copy(smollm2_path, folder / "b.gguf")
    (folder / "notes.txt").write_text("not a model")
    assert [m.name for m in library.import_path(folder)] == ["a", "b"]
    (mlx,) = library.import_path(smollm2_mlx_path, name="smol-mlx")
    assert (mlx.backend, mlx.format, mlx.quant, mlx.chat_template) == ("mlx", "mlx", "4-bit", True)
    assert {"a", "b", "smol-mlx"} <= set(library.names())


def test_what_is_not_a_model_is_refused_and_nothing_is_copied(library, smollm2_path, tmp_path, monkeypatch):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(Exception, match="not a readable GGUF"):
        library.import_path(junk)
    with pytest.raises(LibraryError, match="Nothing to import"):
        library.import_path(tmp_path / "missing.gguf")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LibraryError, match="no .gguf files"):
        library.import_path(empty)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("models.library.shutil.disk_usage", lambda p: usage(10 ** 12, 10 ** 12 - 1000, 1000))
    with pytest.raises(LibraryError, match="Not enough disk space"):
        library.import_path(smollm2_path, name="too-big")
    assert library.find("too-big") is None
    assert not (library.root / "models" / "too-big").exists()
