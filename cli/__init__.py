"""The `lantern` command: its subcommands (chat, generate, serve, models, catalog, doctor, bench) and
the start of the window. The top of the house: nothing imports it."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
