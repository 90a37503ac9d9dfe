"""Every test that does not need the window collects and runs on a machine without Qt (a GPU machine, a headless
server): tests/no_qt/sitecustomize.py hides PySide6, shiboken6 and pytest-qt from a child pytest."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "no_qt")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:pytest-qt", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_the_hiding_works():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "no_qt")}
    r = subprocess.run([sys.executable, "-c", "import PySide6"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "No module named 'PySide6'" in r.stderr


def test_the_tests_that_need_no_window_collect_without_qt():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if not p.name.startswith("test_ui_"))
    r = _pytest("--collect-only", "-q", *files)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "error" not in r.stdout.lower().split("tests collected")[-1]
    collected = int(r.stdout.strip().splitlines()[-1].split()[0])
    assert collected > 500, r.stdout[-500:]


def test_they_run_without_qt():
    r = _pytest("-q", "tests/test_cuda_setup.py", "tests/test_gpu_fit.py", "tests/test_load_order.py")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
