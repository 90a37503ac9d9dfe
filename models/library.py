"""The user's local models: an index in the data folder, the built-in models, imports, pulls, deletes.

The index (models.json) lists what was imported or pulled; the built-in models (models/registry.py)
always appear. Everything about a model is read from its files (GGUF header, config.json), never guessed.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from basics.errors import LanternError, ModelLoadError
from files.owned_files import atomic_write, disk_full_error, file_lock, is_disk_full, move_aside
from files.safe_paths import UnsafeName, check_name, inside, same_ignoring_case
from models.assistants import find_assistant, is_assistant_file
from models.info import describe_model
from models.projectors import find_projector, is_projector
from models.registry import BUILTIN_MODELS, STARTER_MODEL
from runtimes.load_probe import verify_in_child
from runtimes.runtime import LoadOptions


class LibraryError(LanternError):
    pass


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: str
    backend: str  # "llamacpp" or "mlx"
    format: str  # "gguf" or "mlx"
    quant: str
    size_bytes: int
    context_length: int
    architecture: str
    chat_template: bool
    source: str  # "builtin", "import", "pull"
    repo: str = ""  # where a pulled model came from
    linked: bool = False  # an import that points at the user's own file


def data_dir() -> Path:
    """The user's data folder (LANTERN_DATA_DIR overrides it)."""
    env = os.environ.get("LANTERN_DATA_DIR")
    if env:
        return Path(env)

    return Path(platformdirs.user_data_dir("lantern", appauthor=False))


class ModelLibrary:
    def __init__(self, root: Path | None = None):
        self.root = root or data_dir()
        self.index = self.root / "models.json"
        self.models_dir = self.root / "models"

    # -- reading ----------------------------------------------------------------------------------

    def list(self) -> list[LocalModel]:
        return self._builtins() + sorted(self._read().values(), key=lambda m: m.name)

    def get(self, name: str) -> LocalModel | None:
        if name in BUILTIN_MODELS:
            return next((m for m in self._builtins() if m.name == name), None)
        return self.find(name)

    def find(self, name: str) -> LocalModel | None:
        """An imported or pulled model by name (the index only: no file is read)."""
        return self._read().get(name)

    def names(self) -> list[str]:
        return [*BUILTIN_MODELS, *sorted(self._read())]

    def _builtins(self) -> list[LocalModel]:
        found = []
        for name, builtin in BUILTIN_MODELS.items():
            try:
                path = builtin.locate()
                stat = path.stat()
            except (LanternError, OSError):
                continue  # its package is not installed
            found.append(_builtin(str(path), name, stat.st_size, stat.st_mtime_ns))
        return found

    def _read(self) -> dict[str, LocalModel]:
        """The index; a damaged or wrong-shaped one is moved aside and read as empty (models.json is ours,
        but a crash, a disk error or a hand edit may have damaged it)."""
        try:
            data = self.index.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise LibraryError(f"The model index {self.index} cannot be read: {e.strerror or e}") from None
        try:
            return _parse_index(data)
        except (ValueError, TypeError, RecursionError) as e:
            move_aside(self.index, str(e)[:200])
            return {}

    def _write(self, models: dict[str, LocalModel]) -> None:
        body = json.dumps({"version": 1, "models": [asdict(m) for m in models.values()]}, indent=1)
        atomic_write(self.index, body)  # readers see the old index or the new one, never half of one

    def _locked(self):
        """Held around every read-modify-write of the index, across processes (two windows, a CLI import)."""
        return file_lock(self.root / ".models.lock")

    # -- changing ---------------------------------------------------------------------------------

    def add(self, path: Path, *, name: str, source: str, repo: str = "", linked: bool = False) -> LocalModel:
        """Register a complete, checked model file or folder."""
        check_model_name(name)
        model = describe(path, name=name, source=source, repo=repo, linked=linked)
        with self._locked():
            models = self._read()
            if any(same_ignoring_case(name, n) for n in [*models, *BUILTIN_MODELS]):
                raise LibraryError(f"A model named {name!r} already exists; remove it first or choose another name.")
            models[name] = model
            self._write(models)
        return model

    def import_path(self, path: str | os.PathLike, *, link: bool = False, name: str | None = None) -> list[LocalModel]:
        """Import a GGUF file, an MLX folder, or a folder of GGUF files (copied, or linked when `link`)."""
        src = Path(path).expanduser().resolve()
        if not src.exists():
            raise LibraryError(f"Nothing to import at {src}.")
        if src.is_dir() and not (src / "config.json").is_file():
            # projectors and Gemma 4 assistants come with their model
            files = sorted(f for f in src.glob("*.gguf") if not is_projector(f) and not is_assistant_file(f))
            if not files:
                raise LibraryError(f"{src} holds no .gguf files (other than vision projectors) and is not an MLX "
                                  "model folder.")
            if name and len(files) > 1:
                raise LibraryError("A name can only be given when importing one model.")
            return [self._import_one(f, link=link, name=name) for f in files]
        return [self._import_one(src, link=link, name=name)]

    def _import_one(self, src: Path, *, link: bool, name: str | None) -> LocalModel:
        if src.is_file() and is_projector(src):
            raise LibraryError(f"{src.name} is a vision projector, not a model: import the model beside it (its "
                               "projector comes with it).")
        name = check_model_name(name) if name is not None else model_name(src.stem if src.is_file() else src.name)
        found = describe(src, name=name, source="import")  # refuse what is not a model before copying anything
        # and what llama.cpp would refuse or abort on: a test load in a child process (an assistant cannot load
        # alone: it is tried with its model, when that model first drafts with it)
        if src.is_file() and not is_assistant_file(src):
            # within the context it was trained for (embedding models read 512 tokens: the default would be refused)
            n_ctx = LoadOptions().n_ctx
            verify_in_child(src, LoadOptions(n_ctx=min(n_ctx, found.context_length or n_ctx)))
        self.check_free_name(name)
        if link:
            return self.add(src, name=name, source="import", linked=True)
        folder = self.model_folder(name)
        if folder.exists():
            raise LibraryError(f"{folder} already exists and is not a registered model; move it away first.")
        target = folder / _own_file_name(src)
        projector = find_projector(src) if src.is_file() else None
        assistant = find_assistant(src) if src.is_file() else None
        self._copy(src, target)
        try:
            if projector is not None:  # the model's eyes travel with it (app/wiring.py finds them beside it)
                own = _own_file_name(projector)
                self._copy(projector, folder / (own if own != target.name else "mmproj.gguf"))
            if assistant is not None:  # and its MTP heads, where it drafts with them (found in MTP/ as beside it)
                (folder / "MTP").mkdir()
                self._copy(assistant, folder / "MTP" / _own_file_name(assistant))
            return self.add(target, name=name, source="import")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def same_file_as(self, path: str | os.PathLike) -> str | None:
        """The model already in the library whose file is this one (the same file, or the same bytes), if any: an
        import of it would be a second copy under another name. Only files of the same size are read."""
        src = Path(path).expanduser()
        try:
            size = src.stat().st_size
        except OSError:
            return None
        for model in self.list():
            theirs = Path(model.path)
            try:
                if theirs.is_file() and (theirs.samefile(src) or (theirs.stat().st_size == size
                                                                  and _digest(theirs) == _digest(src))):
                    return model.name
            except OSError:
                continue  # a model whose file is gone is not this one
        return None

    def check_free_name(self, name: str) -> None:
        if any(same_ignoring_case(name, n) for n in self.names()):
            raise LibraryError(f"A model named {name!r} already exists; remove it first or choose another name.")

    def model_folder(self, name: str) -> Path:
        """The folder Lantern keeps a copied or pulled model in: data/models/NAME, checked to lie inside."""
        check_model_name(name)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        folder = self.models_dir / name
        if folder.is_symlink():
            raise LibraryError(f"{folder} is a link; Lantern does not write through it.")
        inside(self.models_dir, folder, what="model folder")
        return folder

    def _copy(self, src: Path, target: Path) -> None:
        need = _size(src)
        existing = next(p for p in [target.parent, *target.parents] if p.exists())
        free = shutil.disk_usage(existing).free
        if need > free:
            raise LibraryError(f"Not enough disk space: the model needs {need / 1e9:.1f} GB, "
                               f"{free / 1e9:.1f} GB are free in {existing}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            if src.is_dir():
                shutil.copytree(src, partial)
            else:
                shutil.copy2(src, partial)
            partial.replace(target)
        except OSError as e:
            shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
            if is_disk_full(e):
                raise disk_full_error(target.parent) from None
            raise LibraryError(f"Could not copy {src.name}: {e.strerror or e}") from None

    def remove(self, name: str) -> int:
        """Delete a model; returns the bytes freed (0 for a linked import, whose file stays)."""
        if name in BUILTIN_MODELS:
            raise LibraryError(f"{name} is built into Lantern and cannot be removed.")
        with self._locked():
            models = self._read()
            model = models.pop(name, None)
            if model is None:
                raise LibraryError(f"No local model named {name!r}.")
            self._write(models)
        folder = self._owned_folder(model)
        if folder is None:
            return 0  # a linked import (the user's own file), or an entry that points elsewhere: never touched
        freed = _size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        return freed

    def _owned_folder(self, model: LocalModel) -> Path | None:
        """data/models/NAME when Lantern made it for this model and it holds the model's files; else None."""
        if model.linked or model.source not in ("import", "pull"):
            return None
        try:
            folder = self.model_folder(model.name)
            inside(folder, Path(model.path))
        except (UnsafeName, LibraryError):
            return None
        return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=16)
def _builtin(path: str, name: str, _size: int, _mtime_ns: int) -> LocalModel:
    """A built-in model, described once per process (its header's vocabulary takes ~0.1 s to read: the window's
    start reads the list twice)."""
    return describe(Path(path), name=name, source="builtin")


def describe(path: Path, *, name: str, source: str, repo: str = "", linked: bool = False) -> LocalModel:
    """A LocalModel read from the files themselves."""
    info = describe_model(path)  # one read of the header: it also says whether there is a chat template
    return LocalModel(
        name=name, path=str(path), backend="mlx" if info.format == "mlx" else "llamacpp", format=info.format,
        quant=info.quant, size_bytes=_size(path), context_length=info.n_ctx_train, architecture=info.architecture,
        chat_template=info.chat_template, source=source, repo=repo, linked=linked,
    )


def model_name(stem: str) -> str:
    """A file or repository name as a model name: lowercase, no spaces or slashes."""
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.")[:100].strip("-.")
    if not name:
        raise ModelLoadError(f"Cannot make a model name from {stem!r}.")
    return check_model_name(name)


def _own_file_name(src: Path) -> str:
    """The copy's name inside Lantern's folder: the user's file name when it is a safe one, else a plain one."""
    try:
        return check_name(src.name, what="file name")
    except UnsafeName:
        return "model.gguf" if src.suffix.lower() == ".gguf" else "model"


def check_model_name(name: object) -> str:
    """A model name given by a user, a client or a file: it becomes a folder name, so it must be a safe one."""
    try:
        return check_name(name, what="model name")
    except UnsafeName as e:
        raise LibraryError(str(e)) from None


_FIELDS = {f.name: f.type for f in dataclasses.fields(LocalModel)}
_TYPES = {"str": str, "int": int, "bool": bool}


def _parse_index(data: bytes) -> dict[str, LocalModel]:
    """models.json as LocalModels, every field type-checked; ValueError or TypeError when it is not one."""
    index = json.loads(data.decode("utf-8"))
    if not isinstance(index, dict) or not isinstance(index.get("models", []), list):
        raise ValueError("not an object with a list of models")
    models = {}
    for entry in index.get("models", []):
        if not isinstance(entry, dict) or set(entry) - set(_FIELDS):
            raise ValueError("an entry is not a model")
        for key, value in entry.items():
            kind = _TYPES[_FIELDS[key]]
            if type(value) is not kind:
                raise TypeError(f"{key} of a model is {type(value).__name__}, not {kind.__name__}")
        model = LocalModel(**entry)  # a missing field is a TypeError
        try:
            check_model_name(model.name)
        except LibraryError as e:
            raise ValueError(str(e)) from None
        if model.name in models:
            raise ValueError(f"{model.name!r} is listed twice")
        models[model.name] = model
    return models


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """The model file for a registry name or a path; the starter model when None."""
    if name_or_path is None:
        name_or_path = STARTER_MODEL
    key = str(name_or_path)
    if key in BUILTIN_MODELS:
        return BUILTIN_MODELS[key].locate()
    local = ModelLibrary().find(key)
    if local is not None:
        if not Path(local.path).exists():
            raise ModelLoadError(f"The model {key!r} is registered but its files are gone ({local.path}); "
                                 f"remove it with `lantern models rm {key}`.")
        return Path(local.path)
    path = Path(key).expanduser()
    if path.exists() or os.sep in key or key.endswith(".gguf"):
        return path
    known = ", ".join(ModelLibrary().names())
    raise ModelLoadError(f"No model named {key!r}. Known models: {known}; or give the path of a .gguf file.")
