"""The runtimes the engine drives: the Runtime protocol, llama.cpp (with its slots, vision and load probe),
MLX (with its slots) and the embedder."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
