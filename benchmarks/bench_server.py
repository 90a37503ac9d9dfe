"""The endpoint against the engine and llama-cpp-python's server (the script behind `lantern bench --server`).

    .venv/bin/python benchmarks/bench_server.py [--repeats N] [--no-write]

Prints a table and writes it into docs/benchmarks.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "--server", *sys.argv[1:]]))
