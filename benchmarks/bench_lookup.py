"""Prompt lookup against plain decoding and llama-cpp-python (the script behind `lantern bench`).

    .venv/bin/python benchmarks/bench_lookup.py [--json] [--no-write] [--workload copy|revision|open-ended]

Prints a table (or JSON) and writes the table into docs/benchmarks.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
