"""The five-round agent loop in the real window (offscreen), as a user runs it: an MCP server over stdio
(tests/mcp_servers.py, its `add` tool), every call allowed from its card by a click the moment it shows.

    .venv/bin/python benchmarks/bench_agent_window.py [--rounds 5] [--repeats 3] [--no-write]

Per round: the prompt tokens the model computed (the reply's figures, "tool_rounds"), and the time from the click
on Allow to what the window shows next (the next round's card, or the answer's first text), which holds the tool's
run, the next round's prefill and its call, and the window's own delivery. The model is the starter (generic JSON
calls), held to `add` for `--rounds` rounds, then to text. Writes docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["LANTERN_DATA_DIR"] = tempfile.mkdtemp(prefix="lantern-agent-bench-")

from benchmarks.doc import machine, markdown_table, write_section  # noqa: E402

STARTER = "smollm2-135m-instruct"


def run(rounds: int, repeats: int) -> list[list[tuple[int, float | None]]]:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.conversations import ConversationStore
    from app.settings import Settings, SettingsFile, settings_path
    from app.tools.mcp_config import set_enabled
    from models.hub import HubClient
    from models.library import ModelLibrary, data_dir
    from ui.main_window import MainWindow

    app = QApplication([])
    library = ModelLibrary()
    w = MainWindow(settings=SettingsFile(settings_path(), Settings(temperature=0, max_tokens=64)), library=library,
                   store=ConversationStore(data_dir() / "chats.sqlite3"),
                   make_hub_client=lambda: HubClient(endpoint="http://127.0.0.1:9", library=library))
    w.show()
    server = {"command": sys.executable, "args": [str(ROOT / "tests" / "mcp_servers.py"), "tools"]}
    w.tools_page.paste(json.dumps({"mcpServers": {"calc": server}}))
    set_enabled(w.tools.path, "calc", True)
    w.tools.reload()
    w.tools.start("calc").result(timeout=60)
    w.load_model(STARTER)
    while w.models.state != "ready":
        app.processEvents()
        time.sleep(0.01)
    w.chat.tool_rounds_plan = lambda i: ({"tool_name": "add", "tool_choice": "required", "parallel_tool_calls": False}
                                         if i < rounds else {"tool_choice": "none"})
    results = []
    for _ in range(repeats):
        clicks: list[float] = []
        shown: list[float] = []  # when the window showed what followed each click

        def on_call(call: dict) -> None:
            if call["status"] == "asked":
                if len(shown) < len(clicks):
                    shown.append(time.monotonic())
                card = w.chat.views()[-1].cards.get(call["id"])

                def click() -> None:
                    clicks.append(time.monotonic())
                    card.allow_once.click()

                QTimer.singleShot(0, click)

        def on_text(_text: str) -> None:
            if len(shown) < len(clicks):
                shown.append(time.monotonic())

        w.chat.agent.sig_call.connect(on_call)
        w.chat.agent.sig_text.connect(on_text)
        w.chat.new_chat()
        w.chat.input.setPlainText("Add 1 and 2, then add 3 to the result, and so on: use the add tool for each step.")
        done = []
        w.chat.sig_reply_done.connect(lambda status: done.append(status))
        w.chat.send()
        while not done:
            app.processEvents()
            time.sleep(0.002)
        w.chat.agent.sig_call.disconnect(on_call)
        w.chat.agent.sig_text.disconnect(on_text)
        computed = w.store.messages(w.chat.conversation_id)[-1].stats["tool_rounds"]
        waits = [None] + [(s - c) * 1000 for c, s in zip(clicks, shown)]
        results.append(list(zip(computed, waits + [None] * (len(computed) - len(waits)))))
    w.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = run(args.rounds, args.repeats)
    rows = []
    for i in range(len(runs[0])):
        waits = [r[i][1] for r in runs if len(r) > i and r[i][1] is not None]
        rows.append((str(i + 1), "call" if i < args.rounds else "answer",
                     f"{statistics.median(r[i][0] for r in runs if len(r) > i):.0f}",
                     f"{statistics.median(waits):.0f}" if waits else "(the user's message)"))
    header = ("round", "the model wrote", "prompt tokens computed (median)",
              "click on Allow → shown next, ms (median)")
    body = (f"## The agent loop in the window\n\nMachine: {machine()}  \nModel: {STARTER} (Q4_1), generic JSON tool "
            f"calls; an MCP server over stdio (tests/mcp_servers.py's add)  \nCommand: `.venv/bin/python "
            f"benchmarks/bench_agent_window.py --rounds {args.rounds} --repeats {args.repeats}`  \n"
            f"Date: {datetime.date.today().isoformat()}\n\n{markdown_table(header, rows)}\n\n"
            "The window, offscreen, with every call allowed by a click the moment its card shows. \"Shown next\" is "
            "the next round's card (its call complete: the MCP round trip, the prefill of the call and the result, "
            "and the call written) or the answer's first text. The first round reads the user's message and the "
            "tool definitions; later repeats find those in the cache.\n")
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "agent-window", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
