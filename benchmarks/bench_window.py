"""The window's speed: time from `lantern` to a shown window, and how long the event loop ever waits while a
500-token reply streams in.

    .venv/bin/python benchmarks/bench_window.py [--repeats N] [--no-write] [--compare COMMIT]

Startup: `lantern` is started as a new process (offscreen platform, a fresh data folder each time) and prints
the wall-clock time at which its window was shown; the figure is that minus the time the process was started.
Responsiveness: a 5 ms probe timer in a real window records the longest gap between its ticks while the starter
model writes a 500-token reply (greedy, prompt lookup off). Writes docs/benchmarks.md.
--compare COMMIT measures the same figures for an older commit too (a git worktree of it, run by this script with
the same packages), so a change to the window is weighed against what it replaced.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get("LANTERN_BENCH_TREE", ROOT))  # the code measured: this checkout, or --compare's worktree
sys.path[:0] = [str(TREE), str(ROOT)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from benchmarks.doc import machine, write_section  # noqa: E402


def startup_ms(exe: str | Path, base_env: dict | None = None) -> float:
    """Milliseconds from starting `exe` to its window showing, from `base_env` (default: this environment)."""
    env = {**(os.environ if base_env is None else base_env), "LANTERN_REPORT_STARTUP": "1", "PYTHONPATH": str(TREE),
           "LANTERN_QUIT_AFTER_S": "0.5", "LANTERN_DATA_DIR": tempfile.mkdtemp(prefix="lantern-bench-")}
    t0 = time.time()
    out = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or "window shown at" not in out.stdout:
        raise SystemExit(f"lantern failed: {out.stderr}")
    return (float(out.stdout.split("window shown at ")[1].split()[0]) - t0) * 1000


def responsiveness(tokens: int = 500) -> tuple[float, int, float]:
    """(longest event-loop gap in ms, reply tokens, reply seconds)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.conversations import ConversationStore
    from app.settings import Settings, SettingsFile
    from models.library import ModelLibrary
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    root = Path(tempfile.mkdtemp(prefix="lantern-bench-"))
    w = MainWindow(settings=SettingsFile(root / "settings.json", Settings(temperature=0, max_tokens=tokens,
                                                                          prompt_lookup=False)),
                   library=ModelLibrary(root), store=ConversationStore(root / "chats.sqlite3"), make_hub_client=None)
    w.show()
    gaps, last, result = [], [0.0], {}
    probe = QTimer(w, interval=5)

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe.timeout.connect(tick)

    def done(_status):
        if "warm" not in result:  # the first reply loads the model; the probe runs on the second
            result["warm"] = True
            last[0], result["t0"] = time.perf_counter(), time.perf_counter()
            probe.start()
            w.chat.input.setPlainText("Count from 1 to 1000, separated by commas.")
            w.chat.send()
            return
        probe.stop()
        result["s"] = time.perf_counter() - result["t0"]
        w.close()
        app.quit()

    w.chat.sig_reply_done.connect(done)
    w.chat.input.setPlainText("Hi")
    w.chat.send()
    app.exec()
    stats = w.store.messages(w.chat.conversation_id)[-1].stats
    return max(gaps) * 1000, stats["completion_tokens"], result["s"]


def measure(repeats: int) -> dict:
    exe = str(Path(sys.executable).with_name("lantern"))
    startups = [startup_ms(exe) for _ in range(repeats)]
    gap, tokens, seconds = responsiveness()
    return {"startups": startups, "gap": gap, "tokens": tokens, "seconds": seconds}


def measure_commit(commit: str, repeats: int) -> dict:
    """The same figures for `commit`: its code in a temporary worktree, measured by this script."""
    import json
    import shutil

    tree = Path(tempfile.mkdtemp(prefix="lantern-bench-tree-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                   capture_output=True)
    try:
        out = subprocess.run([sys.executable, __file__, "--repeats", str(repeats), "--no-write", "--json"],
                             env={**os.environ, "LANTERN_BENCH_TREE": str(tree)}, capture_output=True, text=True,
                             check=True, timeout=900)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tree.parent, ignore_errors=True)


def rows_of(label: str, m: dict, repeats: int) -> list[tuple[str, str, str]]:
    s = m["startups"]
    return [(f"window shown after `lantern` starts (median of {repeats}){label}",
             f"{statistics.median(s):.0f} ms (min {min(s):.0f}, max {max(s):.0f})", "< 2000 ms"),
            (f"longest event-loop gap during a {m['tokens']}-token reply ({m['seconds']:.1f} s){label}",
             f"{m['gap']:.1f} ms", "< 50 ms")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--json", action="store_true", help="print the figures as JSON (for --compare)")
    p.add_argument("--compare", metavar="COMMIT", help="measure this older commit too")
    args = p.parse_args()
    now = measure(args.repeats)
    if args.json:
        import json

        print(json.dumps(now))
        return 0
    rows = rows_of("", now, args.repeats)
    if args.compare:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.compare], capture_output=True,
                                text=True, check=True).stdout.strip()
        rows = [(a + ", this commit", b, c) for a, b, c in rows]
        rows += rows_of(f", commit {commit}", measure_commit(args.compare, args.repeats), args.repeats)
    table = "| figure | measured | target |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    print(table)
    if not args.no_write:
        command = f"--repeats {args.repeats}" + (f" --compare {args.compare}" if args.compare else "")
        body = (f"## The desktop window\n\nMachine: {machine()}. Model: SmolLM2-135M-Instruct Q4_1 (the starter).\n"
                f"Command: `.venv/bin/python benchmarks/bench_window.py {command}` "
                f"(offscreen platform). Date: {datetime.date.today()}.\n\n{table}\n"
                "Startup imports only Qt and Lantern's light modules; llama.cpp loads on the engine thread at the first "
                "message. Pygments and markdown-it are warmed up on a pool thread right after the window shows (the "
                "first code block of a reply otherwise stalled the event loop ~70 ms)."
                + (f" The rows of commit {commit} measure that commit's code (a git worktree) on the same packages, "
                   "machine and run." if args.compare else "") + "\n")
        write_section(ROOT / "docs" / "benchmarks.md", "window", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
