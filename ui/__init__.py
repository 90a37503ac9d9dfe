"""The Qt window (the desktop-app issue). The only package besides app/ that may import PySide6."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
