"""Files on disk: GGUF headers read and checked, split GGUFs joined, names and paths checked,
and the files Lantern owns written atomically under locks."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
