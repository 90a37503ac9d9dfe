"""Benchmarks: each prints a table and writes docs/benchmarks.md. `lantern bench` runs the ones in this package
(from a source checkout); the scripts beside them run as `python benchmarks/NAME.py`."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
