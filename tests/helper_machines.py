"""`lantern worker` processes for tests: real helper machines (llama.cpp's RPC server) on 127.0.0.1."""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine.helpers import HelperError, probe

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """`lantern worker` in a process of its own, answering on 127.0.0.1."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.out = tempfile.TemporaryFile()  # it says a line a connection: a pipe nobody reads would fill
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--port", str(self.port),
                                      "--threads", "1", "--no-cache"], cwd=ROOT, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.helper = probe(self.endpoint)
                return
            except HelperError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    self.out.seek(0)
                    raise AssertionError(f"lantern worker did not start: {self.out.read().decode(errors='replace')}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
