"""Entry points, settings and wiring."""

from backends.native import load_first

load_first()  # before numpy or any other compiled module (backends/native.py)
