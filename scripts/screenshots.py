"""Screenshots for the README, in the light and the dark theme: an empty chat, a chat with streamed replies, the
models page, the settings page (`NAME-light.png`, `NAME-dark.png`), `search-THEME.png` (a question answered from a
searched file, with its sources), `images-THEME.png` (a picture in a chat, shown small), and
`tools-THEME.png` (the Tools page with a real MCP server ready), `approval-THEME.png` (a tool call waiting for
Allow once / Allow for this chat / Deny), `agent-THEME.png` (the finished loop, its result opened), and
`features-THEME.png`: a chat written into
the store here (math, a table, a quote, an attached file, a regenerated reply's ‹ 2/2 ›) with its Chat settings open,
a file chip and the context meter; `catalog-THEME.png` (a model's details drawer), `server-THEME.png` (the endpoint
with its Python snippet) and `picker-THEME.png` (the model menu open, with fit and speed).

    scripts/screenshots          (runs this under Xvfb: xvfb-run, from Debian's xvfb package)

A fresh data folder, the real starter model, a real reply (greedy, so it is the same every time).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["LANTERN_DATA_DIR"] = tempfile.mkdtemp(prefix="lantern-shots-")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PROMPTS = ["Write a Python function that reverses a string.", "Now make it reverse the words instead."]


class Tour:
    """Each step shoots a page, sets up the next and hands over after a pause (replies stream first)."""

    def __init__(self, app, w, out: Path):
        self.app, self.w, self.out = app, w, out
        self.pending = list(PROMPTS)

    def shoot(self, name: str) -> None:
        self.app.processEvents()
        self.w.grab().save(str(self.out / f"{name}.png"))
        print(f"wrote {self.out / name}.png")

    def next_prompt(self, _status=None) -> None:
        if getattr(self, "agent_theme", None):  # the tools tour's reply ended
            theme, self.agent_theme = self.agent_theme, None
            QTimer.singleShot(300, lambda: self.agent_done(theme))
            return
        if self.pending:
            self.w.chat.input.setPlainText(self.pending.pop(0))
            self.w.chat.send()
            return
        QTimer.singleShot(300, lambda: self.pages("light"))

    def pages(self, theme: str) -> None:
        self.w.settings_page.widgets["theme"].setCurrentText(theme)  # as the user switches it
        self.w.settings_page.save()
        # the streamed chat
        conversation = self.w._first_chat = getattr(self.w, "_first_chat", self.w.chat.conversation_id)
        self.w.chat.new_chat()
        self.app.processEvents()
        self.shoot(f"empty-{theme}")
        self.w.chat.open_conversation(conversation)
        QTimer.singleShot(300, lambda: (self.shoot(f"chat-{theme}"), self.w.pages.setCurrentWidget(self.w.models_page),
                                        QTimer.singleShot(1500, lambda: self.rest(theme))))

    def rest(self, theme: str) -> None:
        self.shoot(f"models-{theme}")
        view = self.w.models_page.catalog_view
        view.list.setCurrentItem(view.row_of("qwen3.5-4b"))  # its details drawer
        QTimer.singleShot(1500, lambda: self.drawer(theme))

    def drawer(self, theme: str) -> None:
        self.shoot(f"catalog-{theme}")
        self.w.models_page.catalog_view.drawer.close_drawer()
        self.w.pages.setCurrentWidget(self.w.server_page)
        self.w.server_page.language.setCurrentText("Python")
        self.app.processEvents()
        self.shoot(f"server-{theme}")
        self.w.pages.setCurrentWidget(self.w.chat)
        self.w.picker.showPopup()  # the model menu: a window of its own, taken from the screen
        QTimer.singleShot(500, lambda: self.picker(theme))

    def picker(self, theme: str) -> None:
        from PySide6.QtGui import QGuiApplication

        self.app.processEvents()
        frame = self.w.frameGeometry()
        QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height()).save(
            str(self.out / f"picker-{theme}.png"))
        print(f"wrote {self.out / f'picker-{theme}'}.png")
        self.w.picker.hidePopup()
        self.w.pages.setCurrentWidget(self.w.settings_page)
        self.app.processEvents()
        self.shoot(f"settings-{theme}")
        self.w.pages.setCurrentWidget(self.w.chat)
        self.features(theme)
        QTimer.singleShot(1500, lambda: self.finish(theme))

    def features(self, theme: str) -> None:
        if not hasattr(self.w, "_features_chat"):
            self.w._features_chat = _features_chat(self.w.store, Path(os.environ["LANTERN_DATA_DIR"]) / "notes.md")
        self.w.chat.open_conversation(self.w._features_chat)
        self.w.chat.settings_button.setChecked(True)
        self.w.chat.attach([Path(os.environ["LANTERN_DATA_DIR"]) / "notes.md"])
        self.w.chat.input.setPlainText("Which of these keeps the light turning?")

    def finish(self, theme: str) -> None:
        self.shoot(f"features-{theme}")
        self.w.chat.settings_button.setChecked(False)
        self.w.chat.attachments.clear()
        self.w.chat.input.clear()
        if not hasattr(self.w, "_search_chat"):
            self.w._search_chat = _search_chat(self.w.store)
        self.w.chat.open_conversation(self.w._search_chat)
        QTimer.singleShot(800, lambda: self.searched(theme))

    def searched(self, theme: str) -> None:
        self.shoot(f"search-{theme}")
        if not hasattr(self.w, "_image_chat"):
            self.w._image_chat = _image_chat(self.w.store, Path(os.environ["LANTERN_DATA_DIR"]) / "lighthouse.png")
        self.w.chat.open_conversation(self.w._image_chat)
        self.w.chat.input.setPlainText("Is the light on?")
        QTimer.singleShot(800, lambda: self.pictured(theme))

    def pictured(self, theme: str) -> None:
        self.shoot(f"images-{theme}")
        self.w.chat.attachments.clear()
        self.w.chat.input.clear()
        self.tools(theme)

    def tools(self, theme: str) -> None:
        """The Tools page with a real MCP server ready (tests/mcp_servers.py, over stdio), then a chat where the
        model calls it: the card asking, then the finished loop."""
        host = self.w.tools
        if host.state("calculator") is None:
            from app.tools.mcp_config import set_enabled

            self.w.tools_page.paste(json.dumps({"mcpServers": {"calculator": {
                "command": sys.executable, "args": [str(ROOT / "tests" / "mcp_servers.py"), "tools"],
                "env": {"API_KEY": "sk-example-key"}}}}))
            set_enabled(host.path, "calculator", True)
            host.reload()
            host.start("calculator").result(timeout=60)
            self.w.tools_page.refresh()
        self.w.pages.setCurrentWidget(self.w.tools_page)
        self.w.tools_page.servers.setCurrentRow(0)
        self.app.processEvents()
        self.shoot(f"tools-{theme}")
        self.w.pages.setCurrentWidget(self.w.chat)
        self.w.chat.new_chat()
        self.w.chat.tool_rounds_plan = lambda i: ({"tool_name": "add", "tool_choice": "required",
                                                   "parallel_tool_calls": False} if i == 0 else
                                                  {"tool_choice": "none"})
        self.agent_theme = theme
        self.w.chat.input.setPlainText("What is 17 plus 25? Use the add tool.")
        self.w.chat.send()
        QTimer.singleShot(300, lambda: self.asking(theme))

    def asking(self, theme: str) -> None:
        view = self.w.chat.views()[-1] if self.w.chat.views() else None
        card = next((c for c in view.cards.values() if c.allow_once.isVisible()), None) if view else None
        if card is None:
            QTimer.singleShot(200, lambda: self.asking(theme))
            return
        self.app.processEvents()
        self.shoot(f"approval-{theme}")
        card.allow_once.click()

    def agent_done(self, theme: str) -> None:
        for card in self.w.chat.views()[-1].cards.values():
            card.result_toggle.setChecked(True)
        self.app.processEvents()
        self.shoot(f"agent-{theme}")
        self.w.chat.tool_rounds_plan = None
        if theme == "light":
            QTimer.singleShot(300, lambda: self.pages("dark"))
        else:
            self.w.close()
            self.app.quit()


def main(out: Path) -> int:
    from app.settings import Settings, SettingsFile, settings_path
    from app.conversations import ConversationStore
    from models.library import ModelLibrary, data_dir
    from ui.main_window import MainWindow

    app = QApplication([])
    app.setApplicationName("Lantern")
    settings = SettingsFile(settings_path(), Settings(temperature=0, max_tokens=200))
    library = ModelLibrary()
    from models.hub import HubClient

    # no Hub from here: the catalog's drawer says so (an honest screenshot, not a made-up listing)
    w = MainWindow(settings=settings, library=library, store=ConversationStore(data_dir() / "chats.sqlite3"),
                   make_hub_client=lambda: HubClient(endpoint="http://127.0.0.1:9", library=library))
    w.resize(1200, 780)
    w.show()
    out.mkdir(parents=True, exist_ok=True)
    tour = Tour(app, w, out)
    w.chat.sig_reply_done.connect(tour.next_prompt)
    tour.next_prompt()
    return app.exec()


REPLY = r"""The lamp turns on a clockwork drive: a weight of mass $m$ falling a height $h$ stores

$$E = m g h$$

| Part | Job |
|---|---|
| Clockwork | turns the lens |
| Weight | drives the clockwork |

> Wind the weight up every four hours, or the light stops."""


def _search_chat(store) -> int:
    """A question about a file larger than the context: its excerpts in the message, the sources under the reply."""
    from app.attachments import message_with_files
    from app.document_search import Excerpt

    excerpts = [Excerpt(1, "keepers-manual.pdf", 41, "page 87", "In fog the keeper starts the horn, which sounds twice "
                        "every minute until the air clears. The fog log records when it started and stopped.", 1.0),
                Excerpt(1, "keepers-manual.pdf", 112, "pages 214–215", "A keeper who hears a ship's horn answers it "
                        "with three blasts, so the ship knows the rock is near.", 0.9)]
    c = store.create("What to do in fog")
    question = "What should the keeper do when fog comes in?"
    store.add(c.id, "user", message_with_files(question, [], [("keepers-manual.pdf", 612, excerpts)]))
    store.add(c.id, "assistant", "Start the fog horn: it sounds **twice every minute** until the air clears, and the "
              "times go into the fog log. If a ship sounds its horn, answer with three blasts so it knows the rock "
              "is near.", stats={"ttft_ms": 2310, "decode_tokens_per_s": 98, "cached_tokens": 0,
                                 "prompt_tokens": 1040, "model": "smollm2-135m-instruct"})
    return c.id


def _lighthouse() -> bytes:
    """A small picture of a lighthouse on a rock (drawn here: no image ships with Lantern)."""
    import numpy as np

    from runtimes.vision import png_bytes

    h, w = 240, 320
    y = np.arange(h)[:, None, None] / h
    sky = np.array([120, 180, 235]) * (1 - 0.4 * y) + 40 * y
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    img[170:] = [30, 90, 150]  # the sea
    xs = np.arange(w)
    img[150:185][:, (xs > 110) & (xs < 230)] = [70, 65, 60]  # the rock
    for row in range(60, 160):  # the tower, narrowing upwards, in red and white bands
        half = 14 + (row - 60) * 10 // 100
        img[row, 170 - half:170 + half] = [200, 40, 40] if (row // 20) % 2 else [240, 240, 235]
    img[40:60, 156:184] = [90, 90, 95]  # the lamp room
    return png_bytes(np.clip(img, 0, 255).astype(np.uint8))


def _image_chat(store, picture: Path) -> int:
    """A question about a picture: the image kept with the chat and shown small in the bubble."""
    from app.chat_images import ImageStore, image_tags, read_image

    picture.write_bytes(_lighthouse())
    image = read_image(picture)
    ImageStore(store.path.parent / "images").put(image)
    c = store.create("The lighthouse picture")
    store.add(c.id, "user", image_tags([image]) + "What is this, and what colours is it painted?")
    store.add(c.id, "assistant", "A lighthouse on a rock at sea, painted in **red and white bands**, with the lamp "
              "room at the top; the sky is clear.", stats={"ttft_ms": 640, "decode_tokens_per_s": 41,
                                                            "cached_tokens": 0, "prompt_tokens": 291})
    return c.id


def _features_chat(store, notes: Path) -> int:
    from app.attachments import message_with_files, read_attachment

    notes.write_text("Supplies: oil, wicks, lens cloths, a spare clockwork spring.\n")
    c = store.create("How the light turns")
    question = store.add(c.id, "user", message_with_files("How does the light turn?", [read_attachment(notes)]))
    store.add(c.id, "assistant", "It turns by clockwork.", stats={"ttft_ms": 180, "decode_tokens_per_s": 96,
                                                                   "model": "smollm2-135m-instruct"})
    store.add(c.id, "assistant", REPLY, parent=question.id,
              stats={"ttft_ms": 120, "decode_tokens_per_s": 104, "cached_tokens": 95, "prompt_tokens": 118,
                     "model": "smollm2-135m-instruct"})
    return c.id


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"))
