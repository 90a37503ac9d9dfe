"""The window: a navigation rail to the chat, models, server and settings pages, and a header to pick the model."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton, QSizePolicy,
                               QWidget)

from app.chat_documents import ChatDocuments, embedding_models
from app.conversations import ConversationStore
from app.model_host import ModelHost
from app.settings import SettingsFile
from app.tools.mcp_config import config_path
from app.tools.mcp_host import McpHost
from app.wiring import start_worker
from basics.errors import LanternError, ModelLoadError
from models.facts import facts_of
from models.fit import fit_and_speed
from models.info import describe_model
from models.drafts import draft_candidates, mtp_blocks
from models.library import ModelLibrary
from models.registry import BUILTIN_MODELS as BUILTIN_NAMES
from ui.chat_page import ChatPage
from ui.gui_gc import collect_on_gui_thread
from ui.icons import refresh_icons, set_icon
from ui.markdown import warm_up
from ui.model_controller import ModelController
from ui.model_picker import ModelPicker
from ui.models_page import ModelsPage
from ui.nav_rail import NavRail
from ui.server_page import ServerPage
from ui.settings_page import SettingsPage
from ui.tasks import run_task
from ui.theme import SPACE, apply_theme, is_dark, window_style
from ui.tools_page import ToolsPage
from ui.welcome import Welcome


class LoadProgress:
    """How far the current load is (written by the engine thread, read by the toolbar's timer)."""

    def __init__(self):
        self.fraction = 0.0
        self.cancelled = False
        self.stage = ""  # what the load does now, in words, once it says (runtimes.runtime.LoadOptions.on_stage)

    def update(self, fraction: float) -> bool:
        self.fraction = fraction
        return not self.cancelled

    def say(self, stage: str) -> None:
        self.stage = stage


class MainWindow(QMainWindow):
    def __init__(self, *, settings: SettingsFile, library: ModelLibrary, store: ConversationStore,
                 make_hub_client, first_start: bool = False, settings_problem: str = "", restore: bool = True):
        super().__init__()

        collect_on_gui_thread()  # Qt objects in garbage cycles are freed here, never on a worker thread
        self.setWindowTitle("Lantern")
        self.settings, self.library, self.store = settings, library, store
        self.load_progress = LoadProgress()
        self.host = ModelHost(self._open_worker)
        self.models = ModelController(self.host, self)

        self.documents = ChatDocuments(store.path.parent / "documents.sqlite3", lambda: embedding_models(library),
                                       lambda name: Path(m.path) if (m := library.get(name)) else None)
        self.chat = ChatPage(store, self.models, lambda: self.settings.current, self,
                             save_model_defaults=self._save_model_defaults, documents=self.documents,
                             draft_choices=self._draft_choices)
        # the MCP servers of mcp.json beside the chats; the enabled ones start now, off the GUI thread
        self.tools = McpHost(config_path(store.path.parent))
        self.chat.tools_host = self.tools
        self.tools_page = ToolsPage(self.tools, settings, self)
        self.tools.start_enabled()
        self.models_page = ModelsPage(library, make_hub_client, lambda: self.settings.current, self)
        self.settings_page = SettingsPage(settings, self)
        self.server_page = ServerPage(self.host, settings, library.names, self)
        self.pages = NavRail(self)
        for page, title, icon_name in ((self.chat, "Chat", "chat"), (self.models_page, "Models", "models"),
                                       (self.server_page, "Server", "server"), (self.tools_page, "Tools", "tools"),
                                       (self.settings_page, "Settings", "settings")):
            self.pages.addTab(page, title, icon_name)
        self.setCentralWidget(self.pages)
        self._build_header()
        self._connect()
        self._shortcuts()
        self._restore_geometry()
        self.refresh_models()

        self._dark = is_dark()  # the theme the chat and the icons are drawn in
        self.setStyleSheet(window_style())
        if settings_problem:
            self.statusBar().showMessage(settings_problem)

            box = QMessageBox(QMessageBox.Icon.Warning, "Lantern", settings_problem, QMessageBox.StandardButton.Ok, self)
            box.setModal(False)
            QTimer.singleShot(0, box.show)  # not modal: the window is usable at once
            self.problem_box = box

        run_task(warm_up)
        self.welcome = None
        if first_start:
            self.welcome = Welcome(self.models_page, self)
            self.welcome.sig_use_model.connect(self.load_model)
            self.welcome.sig_download.connect(self._download_from_welcome)
            self.chat.banner.addWidget(self.welcome)
            self.chat.input.sig_send_requested.connect(self.welcome.hide)  # chatting from the box: it has served
        if restore:
            self._restore_session()

    # -- the header -------------------------------------------------------------------------------

    def _build_header(self) -> None:
        """The header above the pages: the model picker, Load and Unload, and how the load went."""
        bar = QWidget(self)
        bar.setObjectName("header")
        bar.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.picker = ModelPicker(self)
        self.picker.setAccessibleName("Model")
        self.load_button = QPushButton("Load", self)
        self.load_button.setAccessibleName("Load the model")
        self.unload_button = QPushButton("Unload", self)
        self.unload_button.setAccessibleName("Unload the model")
        set_icon(self.load_button, "load")
        set_icon(self.unload_button, "unload")
        self.loading = QProgressBar(self)
        self.loading.setRange(0, 0)  # llama.cpp does not say how far it is: a busy bar with the time so far
        self.loading.setMaximumWidth(120)
        self.loading.setAccessibleName("Loading")
        self.loading.setTextVisible(False)
        self.loading.hide()
        self.model_status = QLabel("No model loaded.")
        self.model_status.setObjectName("hint")
        self.model_status.setAccessibleName("Model status")
        # a long status never widens the window: it is cut at the header's edge (its tooltip has all of it)
        self.model_status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.unload_button.setEnabled(False)  # nothing is loaded yet
        row = QHBoxLayout(bar)
        row.setContentsMargins(SPACE["l"], SPACE["s"], SPACE["l"], SPACE["s"])
        row.setSpacing(SPACE["s"])
        for widget in (self.picker, self.load_button, self.unload_button, self.loading, self.model_status):
            row.addWidget(widget)
        row.addStretch(1)
        self.pages.set_header(bar)
        self.picker.activated.connect(lambda _i: self.load_model(self.picker.currentText()))  # picking loads
        self._load_clock = QTimer(self, interval=200)
        self._load_clock.timeout.connect(self._show_loading_time)

    def refresh_models(self) -> None:
        self.picker.set_models(self.library.list(), self.host.name or self.settings.current.model)
        self._fit_models()

    def _fit_models(self, *_) -> None:
        """Each local model's fit and estimated speed here, for the picker (headers read on a pool thread)."""
        hw, models, n_ctx = self.models_page.hardware, self.library.list(), self.settings.current.n_ctx
        if hw is None:
            return  # once the machine is known (sig_hardware_found)

        def fits() -> dict[str, str]:
            out = {}
            for m in models:
                try:
                    out[m.name] = fit_and_speed(hw, describe_model(m.path), n_ctx=n_ctx)
                except (LanternError, OSError, ValueError):
                    continue  # a damaged or missing file: the picker shows its details only
            return out

        run_task(fits, self.picker.set_fits)

    def load_model(self, name: str) -> None:
        if name not in self.library.names():
            self.statusBar().showMessage(f"There is no model named {name}.")
            return
        kind = self._kind(name)
        if kind in ("embedding", "drafter"):  # it cannot chat: the endpoint serves the one, the other drafts
            self.statusBar().showMessage(
                f"{name} is an embedding model: it turns text into vectors for the endpoint's /v1/embeddings, and "
                "cannot chat. Pick a chat model." if kind == "embedding" else
                f"{name} is a Gemma 4 assistant: it drafts for its Gemma 4 model (Chat settings → Draft with) and "
                "cannot chat by itself. Pick a chat model.")
            self.refresh_models()
            return
        self.picker.setCurrentText(name)
        try:
            self.settings.update(model=name)  # remembered for the next start
        except OSError as e:
            self.statusBar().showMessage(f"The choice of model could not be saved: {e}")
        try:
            self.models.load(name)
        except LanternError:
            pass  # told through sig_model_failed: the toolbar says why

    def _chat_with(self, name: str) -> None:
        """The Models page's Chat: the model, in a new chat (an open chat's turns were written by another)."""
        self.load_model(name)
        self.pages.setCurrentWidget(self.chat)
        if self.chat.conversation_id is not None and not self.chat.busy:
            self.chat.new_chat()

    def _kind(self, name: str) -> str:
        """chat, embedding or drafter (models/facts.py); "" for a file that cannot be read."""
        local = self.library.get(name)
        try:
            return facts_of(local.path).get("kind", "") if local is not None else ""
        except (OSError, LanternError):
            return ""  # an unreadable file: the load says what is wrong with it

    def _open_worker(self, name: str):  # any thread: the endpoint may ask for a model too

        s = self.settings.current.for_chat(name)  # the model's own defaults (its context size) first
        if s.backend == "remote" and not (s.remote_url or "").strip():
            raise ModelLoadError("The remote backend needs its server's address: set “Remote server” in Settings, "
                                 "or choose another backend there.")
        self.load_progress.cancelled = True  # a load still running for a replaced model stops early
        progress = self.load_progress = LoadProgress()
        local = self.library.find(name)  # this window's library (the default one in the app; a test's own)
        model = local.path if local is not None and name not in BUILTIN_NAMES else name
        options = replace(s.load_options(name), on_progress=progress.update, on_stage=progress.say)
        if options.draft_model is not None:  # chosen from this window's library: its file, or a clear refusal
            draft = self.library.get(options.draft_model)
            if draft is None:
                raise ModelLoadError(f"The draft model {options.draft_model!r} chosen for {name} is no longer in the "
                                     "library: choose another (or none) under Chat settings → Draft with.")
            options = replace(options, draft_model=draft.path)
        remote = s.backend == "remote"
        return start_worker(model, backend=s.backend, options=options, engine_options=s.engine_options(name),
                            remote_url=s.remote_url if remote else None,
                            remote_key=(s.remote_key or os.environ.get("LANTERN_REMOTE_KEY")) if remote else None)

    def _loading(self, name: str) -> None:
        self.picker.blockSignals(True)  # the endpoint may have switched models: the picker shows what loads
        self.picker.setCurrentText(name)
        self.picker.blockSignals(False)
        self.loading.setRange(0, 0)
        self.loading.show()
        self._load_clock.start()
        self._show_loading_time()
        self.unload_button.setEnabled(True)
        self._describe_for_settings(name)

    def _describe_for_settings(self, name: str) -> None:
        """The model's layers and sizes for the Settings page's GPU layers slider (its header, on a pool thread)."""
        local = self.library.get(name)
        if local is None:
            self.settings_page.set_model(None)
            return

        run_task(lambda: describe_model(local.path), self.settings_page.set_model,
                 lambda _e: self.settings_page.set_model(None))

    def _show_loading_time(self) -> None:
        fraction = self.load_progress.fraction
        if fraction > 0:  # llama.cpp reports how far it is; MLX and planning do not (a busy bar until then)
            self.loading.setRange(0, 100)
            self.loading.setValue(int(fraction * 100))
        stage = self.load_progress.stage
        self.model_status.setText(f"Loading {self.models.name}… {time.monotonic() - self.models.loading_since:.1f} s"
                                  + (f", {stage}" if stage else ""))
        self.model_status.setToolTip(stage)

    def _loaded(self, name: str, backend: str, reason: str) -> None:
        self._load_done()
        self.picker.setCurrentText(name)
        self.model_status.setText(f"{name} on {backend}")
        self.model_status.setToolTip(reason)
        self.statusBar().showMessage(f"{name} loaded on {backend}: {reason}", 15000)

    def _failed(self, name: str, error: str) -> None:
        self._load_done()
        self.model_status.setText(f"{name} failed to load")
        self.model_status.setToolTip(error)
        self.statusBar().showMessage(f"{name} failed to load: {error}")

    def unload(self) -> None:
        """Unload the model; a reply being written with it stops first (it would stream on from a model the toolbar
        says is gone)."""
        if self.chat.busy:
            self.chat.stop()
        self.models.unload()

    def _unloaded(self) -> None:
        self.load_progress.cancelled = True  # unloading while loading stops the load
        self._load_done()
        self.model_status.setText("No model loaded.")
        self.model_status.setToolTip("")
        self.unload_button.setEnabled(False)

    def _load_done(self) -> None:
        self._load_clock.stop()
        self.loading.hide()

    # -- wiring -----------------------------------------------------------------------------------

    def _connect(self) -> None:
        self.load_button.clicked.connect(lambda: self.load_model(self.picker.currentText()))
        self.unload_button.clicked.connect(self.unload)
        self.models.sig_model_loading.connect(self._loading)
        self.models.sig_model_loaded.connect(self._loaded)
        self.models.sig_model_failed.connect(self._failed)
        self.models.sig_model_unloaded.connect(self._unloaded)
        self.models_page.sig_library_changed.connect(self.refresh_models)
        self.models_page.sig_use_model.connect(self._chat_with)
        self.settings_page.sig_settings_changed.connect(self._settings_changed)
        self.settings_page.sig_reload_requested.connect(self._reload)
        self.models_page.sig_hardware_found.connect(self.settings_page.set_hardware)
        self.models_page.sig_hardware_found.connect(self._fit_models)
        if self.models_page.hardware is not None:
            self.settings_page.set_hardware(self.models_page.hardware)

    def _settings_changed(self, settings) -> None:
        apply_theme(settings.theme)
        self._follow_theme()
        if self.models_page.asked_helpers != tuple(settings.helpers):
            self.models_page.detect_hardware()  # where each model fits follows the helpers

    def _follow_theme(self) -> None:
        """Colours drawn into the chat (code blocks, bubbles) and the icons follow a change between light and dark,
        whether the user or the system made it."""
        if is_dark() != self._dark:
            self._dark = is_dark()
            self.setStyleSheet(window_style())
            self.chat.restyle()
            refresh_icons(self)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange) and \
                hasattr(self, "_dark"):
            self._follow_theme()

    def _reload(self) -> None:
        self.settings_page.reload_button.hide()
        if self.host.name:
            self.models.reload()

    def _download_from_welcome(self, entry) -> None:
        self.pages.setCurrentWidget(self.models_page)
        self.models_page.download_entry(entry)

    def _shortcuts(self) -> None:
        def shortcut(keys, slot, name):
            action = QAction(name, self)
            action.setShortcut(QKeySequence(keys))
            action.triggered.connect(slot)
            self.addAction(action)
            return action

        self.new_chat_action = shortcut(QKeySequence.StandardKey.New, self._new_chat, "New chat")
        self.search_action = shortcut(QKeySequence.StandardKey.Find, self._search, "Search chats")
        self.settings_action = shortcut("Ctrl+,", lambda: self.pages.setCurrentWidget(self.settings_page), "Settings")
        self.quit_action = shortcut(QKeySequence.StandardKey.Quit, self.close, "Quit")
        self.stop_shortcut = QShortcut(QKeySequence("Escape"), self, self._escape)
        # the last reply and the last message, from the keyboard
        self.regenerate_action = shortcut("Ctrl+R", self.chat.regenerate_last, "Regenerate the last reply")
        self.copy_reply_action = shortcut("Ctrl+Shift+C", self.chat.copy_last_reply, "Copy the last reply")
        self.edit_action = shortcut("Ctrl+E", self.chat.edit_last, "Edit the last message")

    def _draft_choices(self, name: str) -> tuple[list[str], int]:  # any thread: reads the library's headers
        model = self.library.get(name)
        if model is None:
            return [], 0
        return [m.name for m in draft_candidates(model, self.library.list())], mtp_blocks(model)

    def _save_model_defaults(self, model: str, defaults) -> None:
        self.settings.update(model_defaults={**self.settings.current.model_defaults, model: defaults})

    def _new_chat(self) -> None:
        self.pages.setCurrentWidget(self.chat)
        self.chat.new_chat()

    def _search(self) -> None:
        self.pages.setCurrentWidget(self.chat)
        self.chat.sidebar.search.setFocus()
        self.chat.sidebar.search.selectAll()

    def _escape(self) -> None:
        if self.chat.busy:
            self.chat.stop()
        else:
            self.chat.cancel_edit()

    # -- size and place ---------------------------------------------------------------------------

    def _window_state(self) -> QSettings:
        return QSettings(str(self.library.root / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        state = self._window_state()
        if state.value("geometry") is None or not self.restoreGeometry(state.value("geometry")):
            self.resize(1100, 720)
        if state.value("chat_splitter") is not None:
            self.chat.splitter.restoreState(state.value("chat_splitter"))

    def save_geometry(self) -> None:
        state = self._window_state()
        state.setValue("geometry", self.saveGeometry())
        state.setValue("chat_splitter", self.chat.splitter.saveState())
        state.setValue("open_chat", self.chat.conversation_id if self.chat.conversation_id is not None else "")
        state.setValue("loaded_model", self.host.name or "")  # unloaded before quitting: nothing loads at start
        state.sync()

    def _restore_session(self) -> None:
        """Where the user left off: the chat that was open, and the model that was loaded (after the window shows;
        window.ini may be damaged or old, so each value is checked against what exists)."""
        state = self._window_state()
        try:
            chat = int(state.value("open_chat") or -1)
        except (TypeError, ValueError):
            chat = -1
        if chat in {c.id for c in self.store.conversations()}:
            self.chat.open_conversation(chat)
        model = state.value("loaded_model")
        if isinstance(model, str) and model in self.library.names():
            QTimer.singleShot(0, lambda: self.load_model(model))

    def closeEvent(self, event) -> None:
        self.save_geometry()
        self.chat.shutdown()
        self.server_page.stop_and_wait()
        self.models_page.downloads.cancel_all()
        self.host.close()
        self.tools.close()  # the MCP servers Lantern started end with it
        self.documents.close()
        super().closeEvent(event)
