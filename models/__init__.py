"""Model files: where they are, what they are called (Qt-free)."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
