"""`lantern generate --backend mlx` exits cleanly every time (issue 32: SIGABRT at exit in 2 of 5 runs, 8 of 10 on a
busy machine). MLX's thread-local destructors ran after the engine thread was joined, racing with the interpreter's
finalization; the thread that ran MLX is now parked instead (engine/worker.py: park_thread). The busy processes
beside it make the race likely, as they did when it was found."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_twenty_mlx_generations_from_the_command_line_exit_cleanly(smollm2_mlx_path, cpu_hog, tmp_path):
    env = {**os.environ, "LANTERN_CACHE_DIR": str(tmp_path / "cache")}
    failures = []
    for i in range(20):
        run = subprocess.run([sys.executable, "-m", "cli.main", "generate", "--backend", "mlx", "--model",
                              str(smollm2_mlx_path), "--max-tokens", "4", "The capital of France is"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if run.returncode != 0 or "terminate called" in run.stderr or not run.stdout.strip():
            failures.append((i, run.returncode, run.stderr[-500:]))
    assert failures == []
