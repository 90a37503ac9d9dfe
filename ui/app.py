"""Starting the window: `lantern` with no arguments.

Only Qt and Lantern's light modules are imported before the window shows; llama.cpp, MLX and
huggingface_hub load later, off the GUI thread, when a model or the Hub is first needed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from app.conversations import ConversationStore
from app.settings import Settings, SettingsError, SettingsFile, settings_path
from files.owned_files import take_notices
from models.hub import HubClient
from models.library import ModelLibrary, data_dir

STARTED = time.perf_counter()


def display_problem() -> str:
    """Why no window can open here, in one line ("" when one can)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return ""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set): use `lantern chat` "
                "in this terminal, or `lantern serve`.")
    if not os.environ.get("WAYLAND_DISPLAY"):
        return _x11_problem()
    return ""


def _x11_problem() -> str:
    """Qt aborts the process when its X11 plugin cannot load: find out first, and name what is missing."""
    hint = ("(Debian/Ubuntu: sudo apt install libgl1 libegl1 libfontconfig1 libdbus-1-3 libx11-xcb1 libxcb-cursor0 "
            "libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-sync1 "
            "libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0, as the README lists); meanwhile `lantern chat` works in "
            "this terminal.")
    spec = find_spec("PySide6")
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so" if spec and spec.origin else None
    if plugin is not None and plugin.exists():
        try:
            ctypes.CDLL(str(plugin))
        except OSError as e:
            missing = re.search(r"(lib[\w.+-]+\.so[.\d]*): cannot open", str(e))
            return f"the window needs {missing.group(1) if missing else 'more X11 libraries'} on X11 {hint}"
    if ctypes.util.find_library("xcb-cursor") is None:  # Qt 6.5+ checks for it at start and aborts without it
        return f"the window needs libxcb-cursor0 on X11 {hint}"
    return ""


def build_window():
    # deferred: Qt's modules, once display_problem() has found a display Qt can open
    from ui.main_window import MainWindow
    from ui.theme import apply_theme

    path = settings_path()
    first_start, problem = not path.exists(), ""
    try:
        settings = SettingsFile(path)
    except SettingsError as e:  # shown in the window; the file is left alone until a setting changes
        settings, problem = SettingsFile(path, Settings()), f"{e} Using the defaults until you change a setting."
    library = ModelLibrary()
    library.list()  # a damaged model index is found (and moved aside) now, so the window can say so
    store = ConversationStore(data_dir() / "conversations.sqlite3")

    problem = " ".join([problem, *take_notices()]).strip()  # damaged files moved aside: said once
    apply_theme(settings.current.theme)

    def make_hub_client():
        return HubClient(library=library, token=os.environ.get("HF_TOKEN"))  # HF_ENDPOINT is read by huggingface_hub

    return MainWindow(settings=settings, library=library, store=store, make_hub_client=make_hub_client,
                      first_start=first_start, settings_problem=problem)


def run_window() -> int:
    problem = display_problem()
    if problem:
        print(f"lantern: {problem}", file=sys.stderr)
        return 2
    # deferred: Qt, once display_problem() has found a display Qt can open
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Lantern")
    app.setDesktopFileName("lantern")
    window = build_window()
    window.show()
    if os.environ.get("LANTERN_REPORT_STARTUP"):  # benchmarks and the packaging test
        QTimer.singleShot(0, lambda: print(f"window shown at {time.time():.3f} "
                                           f"({(time.perf_counter() - STARTED) * 1000:.0f} ms after ui.app loaded)",
                                           flush=True))
    if quit_after := os.environ.get("LANTERN_QUIT_AFTER_S"):
        QTimer.singleShot(int(float(quit_after) * 1000), window.close)
    code = app.exec()
    window.store.close()
    # Deleted now, while the application exists: freeing Qt objects at interpreter exit can crash.
    # deferred: Qt, once display_problem() has found a display Qt can open
    from PySide6.QtCore import QCoreApplication, QEvent

    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return code
