"""The window's test fixtures (a conftest plugin): real windows on one data folder, the loopback Hub, and helpers to
send a message and read what was stored."""
from __future__ import annotations

import pytest
from hub_server import HubFile, HubRepo, HubServer, HubState
from PySide6.QtCore import Qt

from app.conversations import ConversationStore
from app.settings import Settings, SettingsFile
from models.hub import HubClient
from models.library import ModelLibrary
from ui.tasks import tasks_running, wait_for_tasks

SMOL_REPO = "someone/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPLY_TIMEOUT = 180_000


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Windows on one data folder (so a second one is the app started again); closed at the end."""
    from ui.main_window import MainWindow

    made = []

    def make(*, hub=None, disk_free=None, first_start=False, restore=False, **settings):
        root = tmp_path / "data"
        library = ModelLibrary(root)
        path = root / "settings.json"
        defaults = dict(temperature=0.0, n_ctx=2048, max_tokens=48, server_port=0)
        file = SettingsFile(path) if path.exists() else SettingsFile(path, Settings(**{**defaults, **settings}))

        def client():
            return HubClient(endpoint=hub.endpoint if hub else "http://127.0.0.1:9", library=library,
                             disk_free=disk_free)

        w = MainWindow(settings=file, library=library, store=ConversationStore(root / "conversations.sqlite3"),
                       make_hub_client=client, first_start=first_start, restore=restore)
        w.show()
        w.activateWindow()  # shortcuts reach the active window only
        qtbot.waitUntil(w.isActiveWindow, timeout=5000)
        made.append(w)
        return w

    yield make
    stale = stale_layout_items()
    for w in made:
        close(w)
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)
    wait_for_tasks()
    delete_now(made)
    assert not stale, f"Python wrappers of layout items that Qt has deleted: {stale}"


def stale_layout_items() -> list[str]:
    """Wrappers of layout items no live layout holds. PySide wraps a layout's items (itemAt(), addLayout() of a
    filled layout) and keeps the wrapper while the layout lives; Qt deletes the item when its widget leaves the layout,
    and a widget made later at that address then comes back as the stale item (AttributeError, or a crash in
    shiboken)."""
    from PySide6.QtWidgets import QLayout, QLayoutItem
    from shiboken6 import Shiboken

    wrappers = Shiboken.getAllValidWrappers()
    layouts = [w for w in wrappers if isinstance(w, QLayout) and Shiboken.createdByPython(w)]  # told of deletion
    items = [w for w in wrappers if isinstance(w, QLayoutItem) and not isinstance(w, QLayout)]
    live = {Shiboken.getCppPointer(layout.itemAt(i))[0] for layout in layouts for i in range(layout.count())}
    return [type(w).__name__ for w in items if Shiboken.getCppPointer(w)[0] not in live]


def delete_now(widgets) -> None:
    """Delete the windows while the QApplication lives: a widget collected at interpreter exit, after the
    application is gone, can crash the process after every test has passed."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    for w in widgets:
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    widgets.clear()
    gc.collect()


def close(w) -> None:
    if w.isVisible():
        w.close()
        w.store.close()


@pytest.fixture
def hub(smollm2_path):
    state = HubState()
    state.add(HubRepo(SMOL_REPO, {SMOL_FILE: HubFile(smollm2_path)}, downloads=500))
    with HubServer(state) as server:
        yield server


def send(qtbot, w, text: str) -> str:
    """Type `text`, press Enter, wait for the reply; returns its final status."""
    w.chat.input.setPlainText(text)
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT) as done:
        qtbot.keyClick(w.chat.input, Qt.Key.Key_Return)
    return done.args[0]


def stored(w) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in w.store.messages(w.chat.conversation_id)]


def record_requests(w) -> list:
    """Every request the chat sends to the engine from now on, as sent."""
    sent, real = [], w.chat.session.send

    def record(request):
        sent.append(request)
        real(request)

    w.chat.session.send = record
    return sent
