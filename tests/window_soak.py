"""The window's soak: the real window driven through random but valid actions from one seed, in this process.

    python tests/window_soak.py --seed 7 --steps 400        (tests/test_window_soak.py runs it as a child)
    scripts/soak --minutes 60                                (the long run)

Each action is printed before it runs, so a crash (the fault handler's trace follows) shows the seed and the
actions that led to it. After each step: no exception escaped a slot, the open chat's messages on screen are the
stored ones, and every message sent has a reply row (streaming while the model writes) or an error on screen. At the
end, with the model idle, no reply is left streaming. Timing varies between runs (replies come while later actions
run), so a seed gives the same actions but not always the same interleaving: a failure prints both.
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class SoakFailure(Exception):
    pass


class Soak:
    def __init__(self, seed: int, root: Path):
        from PySide6.QtWidgets import QApplication

        from app.conversations import ConversationStore
        from app.settings import Settings, SettingsFile
        from models.library import ModelLibrary
        from ui import dialogs
        from ui.main_window import MainWindow

        self.rng = random.Random(seed)
        self.app = QApplication.instance() or QApplication(["lantern-soak"])
        self.root = root
        self.errors: list[str] = []
        sys.excepthook = lambda *exc: self.errors.append("".join(traceback.format_exception(*exc)))
        self.files = self._files(root / "files")
        # dialogs answer as a user might; a file dialog offers the prepared files
        dialogs.confirm = lambda *_a: self.rng.random() < 0.7
        dialogs.open_paths = lambda *_a: self.rng.sample(self.files[:2] if self.rng.random() < 0.8 else self.files,
                                                         self.rng.randint(0, 2))
        library = ModelLibrary(root / "data")
        self.models = self._models(library)
        settings = SettingsFile(root / "data" / "settings.json",
                                Settings(temperature=0.7, n_ctx=2048, max_tokens=16, server_port=0))
        self.window = MainWindow(settings=settings, library=library,
                                 store=ConversationStore(root / "data" / "conversations.sqlite3"),
                                 make_hub_client=lambda: None)
        self.window.show()
        if os.environ.get("LANTERN_SOAK_TRACE"):  # each reply's start and end, by message id
            self._trace(self.window.chat)
        self.sent: set[int] = set()  # user messages sent through the window

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notes.md").write_text("# Notes\n\nThe lighthouse keeper logs the weather at dawn.\n")
        (folder / "data.csv").write_text("city,country\nParis,France\nRome,Italy\n")
        (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)  # not text: its chip shows an error
        return [folder / "notes.md", folder / "data.csv", folder / "binary.txt", folder / "gone.txt"]

    @staticmethod
    def _models(library) -> list[str]:
        from models.library import resolve_model

        try:  # a second model to switch to, where the test models are installed
            library.import_path(resolve_model("gemma3-270m"), link=True, name="gemma3-270m")
        except Exception as e:  # noqa: BLE001 - the soak goes on with one model
            print(f"(no second model: {e})", flush=True)
        return library.names()

    # -- the actions ------------------------------------------------------------------------------

    @property
    def chat(self):
        return self.window.chat

    def _views(self, role: str | None = None):
        return [v for v in self.chat.views() if role is None or v.role == role]

    @staticmethod
    def _trace(chat) -> None:
        start, end = chat._start_reply, chat._end_reply

        def started(**kw):
            start(**kw)
            print(f"  [reply {chat._reply.message_id if chat._reply else None} started {kw}]", flush=True)

        def ended(*a, **kw):
            print(f"  [reply {chat._reply.message_id if chat._reply else None} ends {a[0]}]", flush=True)
            end(*a, **kw)

        chat._start_reply, chat._end_reply = started, ended

    def act_send(self) -> str:
        text = self.rng.choice(["Hi.", "Name a colour.", "What is 2 + 2?", "Tell me about Paris.",
                                "Write one line of Python.", "Explain lighthouses in a sentence.", "   ", "Why?"])
        self.chat.input.setPlainText(text)
        if self.rng.random() < 0.8:  # a user mostly takes off a file the bar says cannot be sent
            for chip in self.chat.attachments.chips():
                if chip.error:
                    chip.click()
        before = {m.id for m in self._stored()}
        (self.chat.send_button.click if self.rng.random() < 0.5 else self._press_enter)()
        new = {m.id for m in self._stored() if m.role == "user"} - before
        self.sent |= new
        return repr(text) + ("" if new else f" (not sent: {self.chat.notice.text()!r})")

    def _press_enter(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        QTest.keyClick(self.chat.input, Qt.Key.Key_Return)

    def act_stop(self) -> str:
        (self.chat.stop_button.click if self.rng.random() < 0.5 else self.window._escape)()
        return ""

    def act_wait(self) -> str:
        """Read the reply to its end, as a user mostly does."""
        from PySide6.QtTest import QTest

        started = time.monotonic()
        while self.chat.session.busy and time.monotonic() - started < 120:
            QTest.qWait(20)
        return f"{time.monotonic() - started:.1f} s"

    def act_new_chat(self) -> str:
        (self.chat.sidebar.new_button.click if self.rng.random() < 0.5 else self.window.new_chat_action.trigger)()
        return ""

    def act_open_chat(self) -> str:
        lst = self.chat.sidebar.list
        if lst.count() == 0:
            return "none"
        row = self.rng.randrange(lst.count())
        lst.setCurrentRow(row)
        return str(row)

    def act_regenerate(self) -> str:
        views = self._views("assistant")
        if not views:
            return "none"
        view = self.rng.choice(views)
        view.regenerate_button.click()
        return str(view.message_id)

    def act_edit(self) -> str:
        views = self._views("user")
        if not views:
            return "none"
        view = self.rng.choice(views)
        view.edit_button.click()
        if self.rng.random() < 0.7:
            self.chat.input.setPlainText(self.rng.choice(["Say it again.", "Name a city.", "Shorter, please."]))
            before = {m.id for m in self._stored()}
            self.chat.send_button.click()
            self.sent |= {m.id for m in self._stored() if m.role == "user"} - before
        return str(view.message_id)

    def act_retry(self) -> str:
        last = self.chat.views()[-1] if self.chat.views() else None
        if last is None or last.role != "user" or last.retry_button.isHidden():
            return "none"
        last.retry_button.click()
        return str(last.message_id)

    def act_cancel_edit(self) -> str:
        self.chat.cancel_edit()
        return ""

    def act_branch(self) -> str:
        views = self._views("assistant")
        if not views:
            return "none"
        view = self.rng.choice(views)
        view.sig_branch_requested.emit(view.message_id)  # its menu's "Branch from here"
        return str(view.message_id)

    def act_delete_from(self) -> str:
        views = self._views()
        if not views:
            return "none"
        view = self.rng.choice(views)
        view.sig_delete_requested.emit(view.message_id)  # its menu's "Delete from here…" (confirm answers)
        return str(view.message_id)

    def act_switch_version(self) -> str:
        views = [v for v in self._views() if v.previous_variant.isVisible()]
        if not views:
            return "none"
        view = self.rng.choice(views)
        button = view.previous_variant if self.rng.random() < 0.5 else view.next_variant
        button.click()
        return str(view.message_id)

    def act_search(self) -> str:
        text = self.rng.choice(["Paris", "p", "", "colour", "zzz", "Name"])
        search = self.chat.sidebar.search
        if self.rng.random() < 0.5:
            search.setText(text)
        else:
            from PySide6.QtTest import QTest

            search.clear()
            QTest.keyClicks(search, text)
        return repr(text)

    def act_rename(self) -> str:
        lst = self.chat.sidebar.list
        item = lst.currentItem()
        if item is None:
            return "none"
        title = self.rng.choice(["Renamed", "", "  ", "A chat about Paris"])
        item.setText(title)  # what the list's editor does when the user presses Enter
        return repr(title)

    def act_continue(self) -> str:
        views = [v for v in self._views("assistant") if v.continue_button.isVisible()]
        if not views:
            return "none"
        views[-1].continue_button.click()
        return ""

    def act_pin(self) -> str:
        item = self.chat.sidebar.list.currentItem()
        if item is None:
            return "none"
        menu = self.chat.sidebar.menu_for(item)  # as the right-click menu's first action
        actions = menu.actions()
        if actions:
            actions[0].trigger()
        menu.deleteLater()
        return actions[0].text() if actions else "a heading"

    def act_chat_controls(self) -> str:
        panel = self.chat.chat_settings
        if not panel.isVisible():
            return "hidden"
        choice = self.rng.randrange(3)
        if choice == 0:
            panel.boxes["seed"].setValue(self.rng.choice([-1, 0, 7, 2 ** 31 - 1]))
        elif choice == 1:
            panel.stop.setPlainText(self.rng.choice(["", "###", "\\n\\n", "x" * 300, "\n".join("abcdefghij")]))
        else:
            panel.thinking.setChecked(not panel.thinking.isChecked())
        return str(choice)

    def act_delete_chat(self) -> str:
        self.chat.sidebar.delete_button.click()  # confirm answers
        return ""

    def act_theme(self) -> str:
        theme = self.rng.choice(["light", "dark", "system"])
        self.window.settings_page.widgets["theme"].setCurrentText(theme)
        self.window.settings_page.save()
        return theme

    def act_switch_model(self) -> str:
        if self.rng.random() < 0.2:
            self.window.unload_button.click()
            return "unload"
        name = self.rng.choice(self.models)
        self.window.load_model(name)
        return name

    def act_attach(self) -> str:
        self.chat.attach_button.click()  # the file dialog offers the prepared files
        return str(len(self.chat.attachments.chips()))

    def act_remove_attachment(self) -> str:
        chips = self.chat.attachments.chips()
        if not chips:
            return "none"
        self.rng.choice(chips).click()
        return ""

    def act_page(self) -> str:
        index = self.rng.randrange(self.window.pages.count())
        self.window.pages.setCurrentIndex(index)
        return self.window.pages.tabText(index)

    def act_chat_settings(self) -> str:
        button = self.chat.settings_button
        button.setChecked(not button.isChecked())
        if button.isChecked() and self.rng.random() < 0.5:
            self.chat.chat_settings.system_prompt.setPlainText(self.rng.choice(["Be brief.", "", "Answer in French."]))
        return str(button.isChecked())

    def act_regenerate_last(self) -> str:
        self.window.regenerate_action.trigger()
        return ""

    def act_edit_last(self) -> str:
        self.window.edit_action.trigger()
        return ""

    ACTIONS = {  # weights: sending and reading replies most, the rest around them
        "send": 12, "wait": 10, "stop": 4, "new_chat": 4, "open_chat": 8, "regenerate": 5, "edit": 4, "retry": 2, "cancel_edit": 1,
        "branch": 2, "delete_from": 2, "switch_version": 5, "search": 6, "rename": 2, "delete_chat": 2, "theme": 3,
        "switch_model": 2, "attach": 3, "remove_attachment": 2, "page": 4, "chat_settings": 3, "regenerate_last": 2,
        "edit_last": 1, "pin": 2, "chat_controls": 2, "continue": 2,
    }

    # -- the checks -------------------------------------------------------------------------------

    def _stored(self):
        c = self.chat.conversation_id
        return self.window.store.messages(c) if c is not None else []

    def check(self, *, idle: bool = False) -> None:
        if self.errors:
            raise SoakFailure("an exception escaped a slot:\n" + self.errors[0])
        stored = self._stored()
        shown = [v.message_id for v in self.chat.views()]
        if shown != [m.id for m in stored]:
            raise SoakFailure(f"the chat shows messages {shown}, the store has {[m.id for m in stored]}")
        last = self.chat.views()[-1] if self.chat.views() else None
        if last is not None and last.role == "user" and not self.chat.busy and last.retry_button.isHidden():
            raise SoakFailure(f"message {last.message_id} has no reply, and no Retry")
        for m, after in zip(stored, [*stored[1:], None]):
            if m.id in self.sent and m.role == "user" and after is None and not self._error_shown(m.id):
                raise SoakFailure(f"message {m.id} was sent and has neither a reply nor an error on screen")
        if idle:
            writing = [m.id for m in self._all_messages() if m.status == "streaming"]
            if writing:
                raise SoakFailure(f"replies {writing} are still streaming with the model idle")

    def _error_shown(self, message_id: int) -> bool:
        view = next((v for v in self.chat.views() if v.message_id == message_id), None)
        return bool(view is not None and view.note.text()) or bool(self.chat.notice.text())

    def _all_messages(self):
        store = self.window.store
        return [m for c in store.conversations() for m in store.all_messages(c.id)]

    def settle(self, timeout_s: float = 180) -> None:
        """Stop the reply and wait until the model is idle."""
        from PySide6.QtTest import QTest

        self.chat.stop()
        deadline = time.monotonic() + timeout_s
        while self.chat.session.busy and time.monotonic() < deadline:
            QTest.qWait(50)
        if self.chat.session.busy:
            raise SoakFailure(f"the reply did not stop within {timeout_s:.0f} s")
        QTest.qWait(50)

    def run(self, steps: int | None, minutes: float | None) -> int:
        from PySide6.QtTest import QTest

        names, weights = list(self.ACTIONS), list(self.ACTIONS.values())
        end = time.monotonic() + minutes * 60 if minutes else None
        step = 0
        while (steps is None or step < steps) and (end is None or time.monotonic() < end):
            name = self.rng.choices(names, weights)[0]
            print(f"{step} {name}", end=" ", flush=True)
            print(getattr(self, f"act_{name}")(), flush=True)
            QTest.qWait(self.rng.choice([0, 0, 5, 20, 50, 200, 600]))  # replies arrive between actions, or not
            self.check()
            step += 1
        self.settle()
        self.check(idle=True)
        return step

    def close(self) -> None:
        from PySide6.QtCore import QCoreApplication, QEvent

        self.window.close()
        self.window.store.close()
        self.window.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--data", type=Path, default=None, help="a folder to keep (default: a new temporary one)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if args.steps is None and args.minutes is None:
        args.steps = 400
    faulthandler.enable(all_threads=True)
    root = args.data or Path(tempfile.mkdtemp(prefix="lantern-soak-"))
    os.environ["LANTERN_DATA_DIR"] = str(root / "data")
    print(f"soak: seed {seed}, data in {root}", flush=True)
    started = time.monotonic()
    soak = Soak(seed, root)
    try:
        steps = soak.run(args.steps, args.minutes)
    except SoakFailure as e:
        print(f"\nsoak FAILED (seed {seed}): {e}", flush=True)
        return 1
    finally:
        soak.close()
    print(f"soak: {steps} steps in {time.monotonic() - started:.0f} s, seed {seed}: no crash, no lost message",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
