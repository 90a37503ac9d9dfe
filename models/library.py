"""The user's local models: an index in the data folder, the built-in models, imports, pulls, deletes.

The index (models.json) lists what was imported or pulled; the built-in models (models/registry.py)
always appear. Everything about a model is read from its files (GGUF header, config.json), never guessed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from backends.runtime import LanternError, ModelLoadError
from models.registry import BUILTIN_MODELS

_lock = threading.Lock()  # the window and the server may both touch the index


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
    import platformdirs

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
            except LanternError:
                continue  # its package is not installed
            found.append(describe(path, name=name, source="builtin"))
        return found

    def _read(self) -> dict[str, LocalModel]:
        try:
            data = json.loads(self.index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise LibraryError(f"The model index {self.index} cannot be read: {e}") from None
        return {m["name"]: LocalModel(**m) for m in data.get("models", [])}

    def _write(self, models: dict[str, LocalModel]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".models.", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "models": [asdict(m) for m in models.values()]}, f, indent=1)
        os.replace(tmp, self.index)  # readers see the old index or the new one, never half of one

    # -- changing ---------------------------------------------------------------------------------

    def add(self, path: Path, *, name: str, source: str, repo: str = "", linked: bool = False) -> LocalModel:
        """Register a complete, checked model file or folder."""
        model = describe(path, name=name, source=source, repo=repo, linked=linked)
        with _lock:
            models = self._read()
            if name in models or name in BUILTIN_MODELS:
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
            files = sorted(src.glob("*.gguf"))
            if not files:
                raise LibraryError(f"{src} holds no .gguf files and is not an MLX model folder.")
            if name and len(files) > 1:
                raise LibraryError("A name can only be given when importing one model.")
            return [self._import_one(f, link=link, name=name) for f in files]
        return [self._import_one(src, link=link, name=name)]

    def _import_one(self, src: Path, *, link: bool, name: str | None) -> LocalModel:
        name = name or model_name(src.stem if src.is_file() else src.name)
        describe(src, name=name, source="import")  # refuse what is not a model before copying anything
        if self.get(name) is not None:
            raise LibraryError(f"A model named {name!r} already exists; remove it first or choose another name.")
        if link:
            return self.add(src, name=name, source="import", linked=True)
        target = self.models_dir / name / src.name
        self._copy(src, target)
        try:
            return self.add(target, name=name, source="import")
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise

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
            raise LibraryError(f"Could not copy {src.name}: {e.strerror or e}") from None

    def remove(self, name: str) -> int:
        """Delete a model; returns the bytes freed (0 for a linked import, whose file stays)."""
        if name in BUILTIN_MODELS:
            raise LibraryError(f"{name} is built into Lantern and cannot be removed.")
        with _lock:
            models = self._read()
            model = models.pop(name, None)
            if model is None:
                raise LibraryError(f"No local model named {name!r}.")
            self._write(models)
        if model.linked:
            return 0
        folder = Path(model.path) if Path(model.path).is_dir() else Path(model.path).parent
        freed = _size(folder)
        if folder.parent == self.models_dir or self.models_dir in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
        return freed


def describe(path: Path, *, name: str, source: str, repo: str = "", linked: bool = False) -> LocalModel:
    """A LocalModel read from the files themselves."""
    from models.info import describe_model

    info = describe_model(path)  # one read of the header: it also says whether there is a chat template
    return LocalModel(
        name=name, path=str(path), backend="mlx" if info.format == "mlx" else "llamacpp", format=info.format,
        quant=info.quant, size_bytes=_size(path), context_length=info.n_ctx_train, architecture=info.architecture,
        chat_template=info.chat_template, source=source, repo=repo, linked=linked,
    )


def model_name(stem: str) -> str:
    """A file or repository name as a model name: lowercase, no spaces or slashes."""
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.")
    if not name:
        raise ModelLoadError(f"Cannot make a model name from {stem!r}.")
    return name


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

