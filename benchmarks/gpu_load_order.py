"""Why a CUDA build crashed at its first model load when Lantern's modules came before llama.cpp (basics/native.py).

    python benchmarks/gpu_load_order.py MODEL.gguf OUT_DIR

Each case is a fresh interpreter (LANTERN_NO_EARLY_LLAMA=1 keeps the old order) that imports something, then loads
MODEL's vocabulary through llama-cpp-python: the step that crashed. Cases: Lantern's modules first (the old order);
llama.cpp first (the fix); each third-party compiled module that Lantern loads, alone before llama.cpp (which one it
is); libstdc++ loaded globally first. Then the dynamic linker's bindings of C++ runtime symbols in the crashing order.
Writes OUT_DIR/load_order.json and prints a table.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD = """
import ctypes, sys, llama_cpp as L
L.llama_backend_init()
p = L.llama_model_default_params(); p.vocab_only = True
m = L.llama_model_load_from_file(sys.argv[1].encode(), p)
print("LOADED" if m else "NULL")
"""
LANTERN = "import cli.main, app.server.api, app.conversations, engine.engine, engine.slots, models.library, " \
          "models.info, engine.constraint, app.document_search\n"


def run(name: str, pre: str, model: str, env: dict | None = None, timeout: float = 120) -> dict:
    code = pre + LOAD
    e = {**os.environ, "LANTERN_NO_EARLY_LLAMA": "1", **(env or {})}
    try:
        r = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True, cwd=ROOT, env=e,
                           timeout=timeout)
        ok = r.returncode == 0 and "LOADED" in r.stdout
        return {"case": name, "rc": r.returncode, "ok": ok, "err": r.stderr[-600:]}
    except subprocess.TimeoutExpired:
        return {"case": name, "rc": None, "ok": False, "err": "timeout"}


def foreign_extensions() -> list[str]:
    """Third-party compiled modules that Lantern's imports load (module names)."""
    code = LANTERN + ("import sys, json\n"
                      "print(json.dumps(sorted(n for n, m in list(sys.modules.items()) if getattr(m, '__file__', None)"
                      " and m.__file__.endswith(('.so', '.pyd')) and 'site-packages' in m.__file__)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "LANTERN_NO_EARLY_LLAMA": "1"}, timeout=120)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else []


def bindings(model: str, out: Path) -> list[str]:
    """LD_DEBUG's bindings of std:: locale/regex/codecvt symbols in the old order, those not bound to libstdc++."""
    import tempfile

    log = Path(tempfile.mkdtemp()) / "ld_debug"
    run("ld_debug", LANTERN, model, env={"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(log)}, timeout=300)
    odd = []
    for f in log.parent.glob("ld_debug.*"):
        for line in f.read_text(errors="replace").splitlines():
            if re.search(r"codecvt|locale|regex|ctype|collate", line) and "libstdc++" not in line.split("to ")[-1]:
                odd.append(line.strip())
        f.unlink()
    return odd[:200]


def main() -> int:
    model, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    cases = [("lantern modules first (old order)", LANTERN), ("llama.cpp first (the fix)", "import llama_cpp\n" + LANTERN),
             ("numpy first", "import numpy\n"),
             ("libstdc++ global first, then lantern", "import ctypes; ctypes.CDLL('libstdc++.so.6', ctypes.RTLD_GLOBAL)\n"
              + LANTERN),
             ("nothing first", "")]
    mods = foreign_extensions()
    cases += [(f"only {m}", f"import {m}\n") for m in mods]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1], model), cases))
    report = {"results": results, "foreign_extensions": mods, "odd_bindings": bindings(model, out)}
    lib = Path(__import__("importlib.util").util.find_spec("llama_cpp").origin).parent / "lib"
    for so in sorted(lib.glob("lib*.so*")):
        nm = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True).stdout
        report.setdefault("exports", {})[so.name] = {
            "std": sum(1 for line in nm.splitlines() if " _ZNSt" in line or " _ZNKSt" in line),
            "unique": sum(1 for line in nm.splitlines() if " u " in line)}
    (out / "load_order.json").write_text(json.dumps(report, indent=1))
    print("| case | exit | model loaded |\n|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r['rc']} | {'yes' if r['ok'] else 'NO'} |")
    print("odd bindings:", *report["odd_bindings"][:20], sep="\n  ")
    print("exports:", json.dumps(report.get("exports")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
