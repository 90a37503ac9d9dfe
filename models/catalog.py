"""The catalog shipped with Lantern: a short, curated list of good 4-bit chat models (models/data/catalog.json)."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from models.info import ModelInfo

BACKENDS = {"llamacpp": "gguf", "mlx": "mlx"}


class CatalogError(ValueError):
    """The catalog file is malformed (a bug in Lantern, caught by the tests)."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    params_b: float
    backend: str
    format: str
    quant: str
    repo: str
    files: tuple[str, ...]  # empty: the whole repository (MLX folders)
    size_bytes: int
    context_length: int
    license: str
    n_layers: int
    n_kv_heads: int
    head_dim: int

    def model_info(self) -> ModelInfo:
        """What the fit check and the backend choice need, before any download."""
        return ModelInfo(path=Path(self.repo), format=self.format, size_bytes=self.size_bytes, n_layers=self.n_layers,
                         n_ctx_train=self.context_length, kv_bytes_per_token=self.n_layers * self.n_kv_heads
                         * self.head_dim * 2 * 2, architecture="", quant=self.quant)


def load_catalog(text: str | None = None) -> list[CatalogEntry]:
    if text is None:
        text = resources.files("models").joinpath("data/catalog.json").read_text(encoding="utf-8")
    data = json.loads(text)
    entries = [_entry(i, raw) for i, raw in enumerate(data.get("models", []))]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CatalogError("catalog names must be unique")
    return entries


def _entry(i: int, raw: dict) -> CatalogEntry:
    wanted = {f.name: f.type for f in fields(CatalogEntry)}
    if set(raw) != set(wanted):
        raise CatalogError(f"catalog entry {i}: fields {sorted(set(raw) ^ set(wanted))} missing or unknown")
    e = CatalogEntry(**{**raw, "files": tuple(raw["files"])})
    checks = [
        (e.backend in BACKENDS and BACKENDS[e.backend] == e.format, "backend and format must agree"),
        (e.repo.count("/") == 1 and all(e.repo.split("/")), "repo must be owner/name"),
        (e.format != "gguf" or (e.files and all(f.endswith(".gguf") for f in e.files)), "GGUF entries name .gguf files"),
        (e.format != "mlx" or not e.files, "MLX entries take the whole repository"),
        (0.1 <= e.params_b <= 20, "params_b out of range"),
        (e.size_bytes > 50_000_000, "size_bytes too small"),
        (e.context_length >= 2048 and e.n_layers > 0 and e.n_kv_heads > 0 and e.head_dim > 0, "shape fields"),
        (e.name == e.name.lower() and " " not in e.name and "/" not in e.name, "names are lowercase, no spaces"),
        (bool(e.license), "a licence is required"),
    ]
    for ok, why in checks:
        if not ok:
            raise CatalogError(f"catalog entry {e.name!r}: {why}")
    return e
