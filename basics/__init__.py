"""The bottom of the house: the errors every layer raises, and the early load of llama.cpp's libraries.

Nothing here imports another Lantern package."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
