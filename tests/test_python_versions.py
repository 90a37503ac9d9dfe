"""Lantern declares Python 3.10 (pyproject's requires-python): no module, test or script may use what 3.10 lacks
(tomllib was the one found, issue 32). vermin reads the code for the standard library's versions."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERMIN = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]  # it has no __main__


def test_the_oldest_python_declared_is_the_one_checked():
    declared = re.search(r'^requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared and declared[1] == "3.10"


def test_nothing_needs_a_newer_python_than_3_10():
    folders = ["app", "basics", "chat_format", "cli", "engine", "files", "machine", "models", "runtimes", "ui", "tests",
               "scripts", "benchmarks", "packaging"]
    run = subprocess.run([*VERMIN, "-q", "--target=3.10-", "--no-tips", "--violations",
                          "--eval-annotations", *folders], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_sees_a_module_3_10_lacks(tmp_path):
    (tmp_path / "new.py").write_text("import tomllib\n")
    run = subprocess.run([*VERMIN, "-q", "--target=3.10-", "--no-tips", "--violations",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "tomllib" in run.stdout
