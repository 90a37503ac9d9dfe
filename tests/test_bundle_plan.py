"""The app bundle's plan (packaging/bundle_plan.py) against what the backends really import: a module the app
offers must not pull in one the bundle leaves out (issue 32: openai for the remote backend, transformers for MLX).
Quick: it imports in a child process instead of building the bundle (tests/test_packaging.py builds it)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_plan  # noqa: E402


def imported_by(modules: list[str]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return set(json.loads(run.stdout.strip().splitlines()[-1]))


def left_out(loaded: set[str], excludes: list[str]) -> list[str]:
    return sorted(m for m in loaded for x in excludes if m == x or m.startswith(x + "."))


@pytest.mark.parametrize("mlx", [False, True], ids=["without MLX", "with MLX"])
def test_every_backend_the_bundle_offers_imports_nothing_it_leaves_out(mlx):
    if mlx and importlib.util.find_spec("mlx_lm") is None:
        pytest.skip("mlx-lm is not installed here (the dev set-up installs its CPU wheel on Linux)")
    loaded = imported_by(bundle_plan.backend_imports(mlx=mlx))
    assert left_out(loaded, bundle_plan.excludes(mlx=mlx)) == []


def test_mlx_ships_on_apple_silicon_and_on_linux_only_when_asked():
    assert bundle_plan.ships_mlx("darwin", "arm64", {})
    assert not bundle_plan.ships_mlx("darwin", "x86_64", {})
    assert not bundle_plan.ships_mlx("linux", "x86_64", {})
    assert bundle_plan.ships_mlx("linux", "x86_64", {"LANTERN_BUNDLE_MLX": "1"})
    assert "mlx" in bundle_plan.excludes(mlx=False) and "mlx" not in bundle_plan.excludes(mlx=True)


def test_the_check_sees_a_left_out_module():
    assert left_out({"openai", "openai._client", "json"}, ["openai"]) == ["openai", "openai._client"]
