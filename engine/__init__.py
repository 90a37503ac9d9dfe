"""The generation engine: one thread owns a model and turns requests into a stream of small events
(decoding, drafting and its policy, sampling, constraints, slots, the state cache, the workers)."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
