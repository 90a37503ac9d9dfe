"""Entry points, settings and wiring."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
