"""Every entry point loads llama.cpp's libraries before any other compiled extension (basics/native.py).

Each check runs in a fresh interpreter and reads the dynamic loader's own list of loaded objects, which is in load
order: libllama must come before every shared object from site-packages other than llama-cpp-python's own (numpy's
extension and bundled libraries, apsw, tokenizers, llguidance, PySide6...). On a CUDA build the other order crashed
every model load (basics/native.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the child prints: the loaded objects in load order, after importing an entry point the way it starts.
CHILD = r"""
import ctypes, json, sys

def loaded():
    if sys.platform == "darwin":
        dyld = ctypes.CDLL(None)
        dyld._dyld_get_image_name.restype = ctypes.c_char_p
        return [dyld._dyld_get_image_name(i).decode() for i in range(dyld._dyld_image_count())]

    class Info(ctypes.Structure):
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]
    names = []
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Info), ctypes.c_size_t, ctypes.c_void_p)
    def visit(info, size, data):
        names.append((info.contents.name or b"").decode())
        return 0
    ctypes.CDLL(None).dl_iterate_phdr(CB(visit), None)
    return names

kind, target = sys.argv[1], sys.argv[2]
import runpy
if kind == "module":
    __import__(target)
elif kind == "run_module":  # `python -m target`, without running its main
    runpy.run_module(target, run_name="__lantern_load_order__")
elif kind == "script":
    runpy.run_path(target, run_name="__lantern_load_order__")
elif kind == "console":  # the installed `lantern` command: its entry point, loaded as pip's launcher does
    from importlib.metadata import entry_points
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == target]
    ep.load()
print(json.dumps(loaded()))
"""

ENTRY_POINTS = [
    ("console", "lantern"),  # the CLI, the window (`lantern` with no command) and `lantern serve`
    ("script", str(ROOT / "packaging" / "entry.py")),  # the installable app's entry point
    ("run_module", "runtimes.load_probe"),  # the child that test-loads a new model file
    ("module", "ui.app"),  # the window's own module
    ("module", "app.server.run"),  # the endpoint
    ("module", "cli.main"),
    ("module", "models.library"),  # a library user (a benchmark, a script) that starts from models/
]


def _load_order(kind: str, target: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, target], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _first_foreign(objects: list[str]) -> tuple[int, int, str]:
    """(libllama's index, the index of the first other site-packages object, its path)."""
    llama = next((i for i, o in enumerate(objects) if Path(o).name.startswith("libllama.")), None)
    assert llama is not None, "llama.cpp's library was not loaded at all"
    foreign = [(i, o) for i, o in enumerate(objects)
               if ("site-packages" in o or "dist-packages" in o) and "/llama_cpp/" not in o]
    first = foreign[0] if foreign else (len(objects), "")
    return llama, first[0], first[1]


@pytest.mark.parametrize("kind,target", ENTRY_POINTS, ids=[t.rsplit("/", 1)[-1] for _, t in ENTRY_POINTS])
def test_llama_cpp_loads_before_any_other_compiled_module(kind, target):
    objects = _load_order(kind, target)
    llama, first, path = _first_foreign(objects)
    assert llama < first, f"{path} was loaded before llama.cpp's library ({target})"


def test_the_check_sees_the_wrong_order():
    """The check itself fails on the order that crashed: numpy first, llama.cpp after."""
    code = "import numpy, llama_cpp"
    objects = _load_order("script", _script(code))
    llama, first, path = _first_foreign(objects)
    assert first < llama and "numpy" in path


def test_the_early_load_can_be_turned_off_for_diagnosis(monkeypatch):
    """LANTERN_NO_EARLY_LLAMA=1 keeps the old order (the GPU check reproduces the crash with it)."""
    monkeypatch.setenv("LANTERN_NO_EARLY_LLAMA", "1")
    objects = _load_order("module", "cli.main")
    assert not any(Path(o).name.startswith("libllama.") for o in objects)


def _script(code: str) -> str:
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(code)
    f.close()
    return f.name
