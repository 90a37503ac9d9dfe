"""The catalog shipped with Lantern: current 4-bit models worth running locally (models/data/catalog.json).

Each entry names a repository and file on the Hub. Its size and shape (layers, KV cache per token, sliding window,
recurrent state) are approximate until read from the file itself: `lantern models catalog refresh` reads every
header from the Hub into the bundled file, and a user's first look at an entry with a network does the same for
that entry and remembers it (catalog-figures.json in the data folder).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from datetime import date
from importlib import resources
from pathlib import Path, PurePosixPath

from files.owned_files import atomic_write, file_lock, move_aside
from files.safe_paths import UnsafeName, check_name, check_relative
from models.hub_errors import HubError
from models.info import ModelInfo

BACKENDS = {"llamacpp": "gguf", "mlx": "mlx"}
KINDS = ("chat", "embedding")
FIGURES = ("size_bytes", "context_length", "n_layers", "kv_bytes_per_token", "window", "window_bytes_per_token",
           "state_bytes", "architecture", "tools", "reasoning")  # what reading the file can correct
FIGURES_FILE = "catalog-figures.json"


class CatalogError(ValueError):
    """The catalog file is malformed (a bug in Lantern, caught by the tests)."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    family: str
    kind: str  # "chat" or "embedding"
    params_b: float  # all parameters, billions
    active_b: float  # those each token uses (a mixture of experts uses a few of its experts)
    backend: str
    format: str
    quant: str
    repo: str
    files: tuple[str, ...]  # empty: the whole repository (MLX folders)
    license: str
    vision: bool
    # figures read from the file (approximate until `checked` names the commit they were read at)
    size_bytes: int
    context_length: int
    n_layers: int
    kv_bytes_per_token: int  # full-attention layers' K and V, f16
    window: int
    window_bytes_per_token: int
    state_bytes: int  # recurrent layers' state, with llama.cpp's rollback snapshots
    architecture: str
    tools: str  # the tool-call format Lantern reads from it ("" for embedding models)
    reasoning: bool
    checked: str = ""  # "COMMIT DATE" once read from the Hub; "" while the figures are estimates
    mtp_layers: int = -1  # the file's MTP blocks, which draft for it (runtimes/llama_mtp.py); -1: not read yet

    @property
    def approximate(self) -> bool:
        return not self.checked

    def model_info(self) -> ModelInfo:
        """What the fit check and the backend choice need, before any download."""
        return ModelInfo(path=PurePosixPath(self.repo), format=self.format, size_bytes=self.size_bytes,
                         n_layers=self.n_layers, n_ctx_train=self.context_length,
                         kv_bytes_per_token=self.kv_bytes_per_token, architecture=self.architecture, quant=self.quant,
                         tool_format=self.tools, reasoning="yes" if self.reasoning else "", window=self.window,
                         window_bytes_per_token=self.window_bytes_per_token, state_bytes=self.state_bytes)

    def with_figures(self, info: ModelInfo, checked: str) -> "CatalogEntry":
        """This entry with the figures read from its file (a header or config.json) at `checked`."""
        return dataclasses.replace(
            self, size_bytes=info.size_bytes, context_length=info.n_ctx_train or self.context_length,
            n_layers=info.n_layers, kv_bytes_per_token=info.kv_bytes_per_token, window=info.window,
            window_bytes_per_token=info.window_bytes_per_token, state_bytes=info.state_bytes,
            architecture=info.architecture or self.architecture,
            tools=(info.tool_format or self.tools) if self.kind == "chat" else "",
            reasoning=(bool(info.reasoning) or info.tool_format == "harmony") if info.format == "gguf"
            else self.reasoning, checked=checked,  # harmony's reasoning is a channel, not tags
            mtp_layers=info.mtp_layers if info.format == "gguf" else 0)  # Lantern drafts with them on llama.cpp

    def spec(self) -> str:
        """What `HubClient.pull` is given: a GGUF file, or the whole MLX repository."""
        return f"{self.repo}:{self.files[0]}" if self.files else self.repo


def bundled_text() -> str:
    return resources.files("models").joinpath("data/catalog.json").read_text(encoding="utf-8")


def load_catalog(text: str | None = None, *, figures_dir: Path | None = None) -> list[CatalogEntry]:
    """The bundled catalog (or `text`), with the figures a user's earlier looks read from the Hub."""
    data = json.loads(bundled_text() if text is None else text)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError("a catalog is an object with a list of models")
    entries = [_entry(i, raw) for i, raw in enumerate(data["models"])]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CatalogError("catalog names must be unique")
    if figures_dir is not None:
        known = read_figures(figures_dir)
        entries = [_with_known(e, known.get(e.name)) for e in entries]
    return entries


def catalog_json(entries: list[CatalogEntry], note: str) -> str:
    rows = []
    for e in entries:
        raw = dataclasses.asdict(e)
        raw["files"] = list(e.files)
        rows.append("    " + json.dumps(raw, ensure_ascii=False))
    return ('{\n  "version": 2,\n  "note": ' + json.dumps(note) + ',\n  "models": [\n' + ",\n".join(rows)
            + "\n  ]\n}\n")


def read_from_hub(client, entry: CatalogEntry) -> CatalogEntry:
    """`entry` with its figures read from the Hub: the file's size from the listing, its shape from the GGUF
    header (a ranged read) or the MLX config.json. HubError when the repository or file is not there."""
    listing = client.listing(entry.repo)
    if entry.files:
        choice = next((c for c in listing.choices if tuple(c.files) == entry.files), None)
    else:
        choice = next((c for c in listing.choices if c.label == "mlx"), None)
    if choice is None:
        what = entry.files[0] if entry.files else "an MLX model"
        raise HubError(f"{entry.repo} has no {what} (the catalog entry {entry.name} is out of date).")
    info = client.describe(listing, choice)
    return entry.with_figures(info, f"{(listing.commit or 'unknown')[:12]} {date.today().isoformat()}")


# -- figures read on the user's machine ------------------------------------------------------------

def read_figures(folder: Path) -> dict[str, dict]:
    """Figures read from the Hub earlier, by entry name; a damaged file is moved aside and forgotten."""
    path = folder / FIGURES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("not a mapping of entries")
        return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        move_aside(path, f"the catalog's saved figures could not be read ({type(e).__name__})")
        return {}


def remember_figures(folder: Path, entry: CatalogEntry) -> None:
    """Keep what was read for `entry` (under the folder's lock: two windows may look at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".catalog-figures.lock"):
        known = read_figures(folder)
        known[entry.name] = {"repo": entry.repo, "files": list(entry.files), "checked": entry.checked,
                             "mtp_layers": entry.mtp_layers, **{k: getattr(entry, k) for k in FIGURES}}
        atomic_write(folder / FIGURES_FILE, json.dumps(known, indent=1, sort_keys=True))


def _with_known(entry: CatalogEntry, known: dict | None) -> CatalogEntry:
    """Saved figures count only for the same repository and files, and only when every one is well typed."""
    if not known or known.get("repo") != entry.repo or known.get("files") != list(entry.files):
        return entry
    want = {f.name: f.type for f in fields(CatalogEntry) if f.name in FIGURES or f.name == "checked"}
    values = {k: known.get(k) for k in want}
    if not all(_typed(values[k], want[k]) for k in want) or not values["checked"]:
        return entry
    mtp = known.get("mtp_layers")  # figures saved before Lantern read it: still not known
    if isinstance(mtp, int) and not isinstance(mtp, bool) and 0 <= mtp <= 64:
        values["mtp_layers"] = mtp
    candidate = dataclasses.replace(entry, **values)
    try:
        return _checked(candidate)
    except CatalogError:
        return entry


def _typed(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 50
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str) and len(value) < 200


# -- checking entries ------------------------------------------------------------------------------

def _entry(i: int, raw: dict) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"catalog entry {i} is not an object")
    wanted = {f.name: f.type for f in fields(CatalogEntry)}
    if set(raw) != set(wanted):
        raise CatalogError(f"catalog entry {i}: fields {sorted(set(raw) ^ set(wanted))} missing or unknown")
    for key, kind in wanted.items():
        value = raw[key]
        if key == "mtp_layers":  # -1: not read from the file yet
            ok = isinstance(value, int) and not isinstance(value, bool) and -1 <= value <= 64
        elif key == "files":
            ok = isinstance(value, list) and all(isinstance(f, str) for f in value)
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if kind == "float" else \
                _typed(value, kind)
        if not ok:
            raise CatalogError(f"catalog entry {i}: {key} has the wrong type")
    return _checked(CatalogEntry(**{**raw, "files": tuple(raw["files"])}))


def _checked(e: CatalogEntry) -> CatalogEntry:
    checks = [
        (e.backend in BACKENDS and BACKENDS[e.backend] == e.format, "backend and format must agree"),
        (e.kind in KINDS, "kind is chat or embedding"),
        (e.repo.count("/") == 1 and all(e.repo.split("/")), "repo must be owner/name"),
        (e.format != "gguf" or (e.files and all(f.endswith(".gguf") for f in e.files)), "GGUF entries name .gguf files"),
        (e.format != "mlx" or not e.files, "MLX entries take the whole repository"),
        (0.02 <= e.params_b <= 40 and 0 < e.active_b <= e.params_b, "params_b out of range"),
        (e.size_bytes > 1_000_000, "size_bytes too small"),
        (e.context_length >= 512 and e.n_layers > 0, "shape fields"),
        (e.kv_bytes_per_token + e.window_bytes_per_token + e.state_bytes > 0, "a model keeps some cache"),
        (bool(e.window) == bool(e.window_bytes_per_token), "a window and its layers go together"),
        (e.name == e.name.lower() and " " not in e.name and "/" not in e.name, "names are lowercase, no spaces"),
        (bool(e.license), "a licence is required"),
        (e.kind == "chat" or (not e.tools and not e.reasoning), "embedding models take no tools"),
        (-1 <= e.mtp_layers <= 64, "mtp_layers: -1 (not read yet) to 64"),
    ]
    for ok, why in checks:
        if not ok:
            raise CatalogError(f"catalog entry {e.name!r}: {why}")
    try:  # names that become paths in the user's library
        check_name(e.name)
        for f in e.files:
            check_relative(f)
    except UnsafeName as err:
        raise CatalogError(f"catalog entry {e.name!r}: {err}") from None
    return e
