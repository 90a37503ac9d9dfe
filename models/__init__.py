"""Model files: where they are, what they are called (Qt-free)."""

from backends.native import load_first

load_first()  # before numpy or any other compiled module (backends/native.py)
