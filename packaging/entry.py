"""The bundle's entry point: `Lantern` opens the window, `lantern` is the command line (no arguments: the window)."""
import multiprocessing
import sys

from cli.main import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
