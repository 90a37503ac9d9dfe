"""The window soak (tests/window_soak.py) as a child process: a crash is a failure with its seed and actions, not a
dead test run. `scripts/soak --minutes 60` is the long run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

SOAK = Path(__file__).resolve().parent / "window_soak.py"
SEED = int(os.environ.get("LANTERN_SOAK_SEED", "20261205"))  # fixed in CI; the long run draws its own
STEPS = 400  # about 2 minutes on 2 cores


def test_the_window_survives_random_use(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, str(SOAK), "--seed", str(SEED), "--steps", str(STEPS), "--data",
                          str(tmp_path)], capture_output=True, text=True, timeout=1500, env=env)
    actions = [line for line in run.stdout.splitlines() if line[:1].isdigit()]
    assert run.returncode == 0, (f"the soak failed (exit {run.returncode}, seed {SEED}); its last actions:\n"
                                 + "\n".join(actions[-40:]) + "\n" + run.stdout[-1500:] + run.stderr[-6000:])
    assert len(actions) == STEPS and "no crash, no lost message" in run.stdout
