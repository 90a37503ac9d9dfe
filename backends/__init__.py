"""Runtimes (llama.cpp, later MLX) and the generation engine that drives them.

Nothing in this package imports Qt: the window and the HTTP server are clients of it.
"""

from backends.native import load_first

load_first()  # before numpy or any other compiled module (backends/native.py)
