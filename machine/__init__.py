"""This machine: its hardware (GPUs, memory, cores) and how many threads to use."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
