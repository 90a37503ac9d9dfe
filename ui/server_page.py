"""The endpoint: start and stop it, where it listens (this computer or the local network, with a key), code to call
it, and a live log of its requests."""
from __future__ import annotations

import secrets
import time
from typing import Callable

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from app.model_host import ModelHost
from app.server.service import ModelService
from app.server.snippets import LANGUAGES, lan_address, snippet
from app.settings import SettingsFile
from ui.tasks import run_task


LOG_COLUMNS = ("Time", "Method", "Path", "Status", "Model", "Figures")
LOG_ROWS = 2000  # the oldest go first


def figures_words(figures: dict | None) -> str:
    """A completion's figures in plain words; its details go in the row's tooltip."""
    if not figures:
        return ""
    s = figures["stats"]
    words = [f"{s.ttft_ms / 1000:.1f} s to the first token", f"{s.completion_tokens} tokens",
             f"{s.decode_tokens_per_s:.0f} tokens a second"]
    if s.cached_tokens:
        words.append(f"reused {s.cached_tokens:,} of {s.prompt_tokens:,}")
    if s.drafted_tokens:
        words.append(f"{s.accepted_tokens} of {s.drafted_tokens} guessed tokens kept")
    if figures["finish_reason"] not in ("stop", "length", "tool_calls"):
        words.append(figures["finish_reason"])
    return " · ".join(words)


def log_row(entry: dict) -> list[str]:
    """One request: when, what, how it ended (a refusal's reason in the figures column), and its figures."""
    figures = entry.get("figures")
    model = figures["model"] if figures else ""
    detail = figures_words(figures) or entry.get("error") or ""
    if figures and figures.get("error"):
        detail += f" · error: {figures['error']}"
    return [time.strftime("%H:%M:%S", time.localtime(entry["time"])), entry["method"], entry["path"],
            str(entry["status"]), str(model)[:80], detail]


class ServerPage(QWidget):
    _sig_finished = Signal(object)  # from the server's thread
    _sig_model_changed = Signal()  # from whichever thread switched the model

    def __init__(self, host: ModelHost, settings: SettingsFile, model_names: Callable[[], list[str]], parent=None):
        super().__init__(parent)
        self.host, self.settings, self.model_names = host, settings, model_names
        self.server = None
        self.state = "stopped"
        s = settings.current
        form = self._make_form(s)
        self.toggle = QPushButton("Start the server")
        self.toggle.setAccessibleName("Start or stop the server")
        self.toggle.clicked.connect(lambda: self.stop() if self.state == "running" else self.start())
        self.url = QLabel("Not running.")
        self.url.setAccessibleName("Server base URL")
        self.copy_url = QPushButton("Copy URL")
        self.copy_url.setAccessibleName("Copy the base URL")
        self.copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.base_url or ""))
        self.copy_url.setEnabled(False)
        url_row = QHBoxLayout()
        url_row.addWidget(self.url, 1)
        url_row.addWidget(self.copy_url)
        self._make_log()
        code_row = self._make_code_row()
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("An OpenAI-compatible endpoint for your other apps, on the model loaded here."))
        layout.addLayout(form)
        layout.addWidget(self.toggle)
        layout.addLayout(url_row)
        layout.addLayout(code_row)
        layout.addWidget(self.code)
        layout.addWidget(QLabel("Requests"))
        layout.addWidget(self.log, 1)
        self._sig_finished.connect(self._logged)
        host.subscribe(self._model_switched)  # the snippet names the loaded model
        self._sig_model_changed.connect(self.show_snippet)
        for changed in (self.address.textChanged, self.port.valueChanged, self.key.textChanged):
            changed.connect(self.show_snippet)
        self.show_snippet()

    def _make_form(self, s) -> QFormLayout:
        """Where the server listens and the key it asks for."""
        self.address = QLineEdit(s.server_host)
        self.address.setAccessibleName("Server address")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setValue(s.server_port)
        self.port.setAccessibleName("Server port")
        self.port.setSpecialValueText("any free port")
        self.key = QLineEdit(s.server_api_key or "")
        self.key.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.key.setPlaceholderText("none (needed beyond this computer)")
        self.key.setAccessibleName("API key")
        self.lan = QCheckBox("Share on the local network")
        self.lan.setToolTip("Other computers on your network can use the model; they need the API key (one is made "
                            "when there is none)")
        self.lan.setChecked(s.server_host in ("0.0.0.0", "::"))
        self.lan.toggled.connect(self._share_on_lan)
        self.copy_key = QPushButton("Copy key")
        self.copy_key.setAccessibleName("Copy the API key")
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.key.text().strip()))
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.copy_key)
        form = QFormLayout()
        form.addRow("", self.lan)
        form.addRow("Address", self.address)
        form.addRow("Port", self.port)
        form.addRow("API key", key_row)
        return form

    def _make_log(self) -> None:
        """The requests answered: time, method, path, status and figures."""
        self.log = QTableWidget(0, len(LOG_COLUMNS), self)
        self.log.setHorizontalHeaderLabels(LOG_COLUMNS)
        self.log.setAccessibleName("Request log")
        self.log.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.log.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.log.verticalHeader().hide()
        self.log.setWordWrap(False)
        self.log.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.log.horizontalHeader()
        for column in range(len(LOG_COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(2, 200)
        header.setStretchLastSection(True)

    def _make_code_row(self) -> QHBoxLayout:
        """Code that calls the endpoint, in the language picked."""
        self.language = QComboBox()
        self.language.setAccessibleName("Code language")
        self.language.addItems(LANGUAGES)
        self.language.currentTextChanged.connect(self.show_snippet)
        self.code = QPlainTextEdit(readOnly=True)
        self.code.setAccessibleName("Code that calls the endpoint")
        self.code.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code.setMaximumHeight(self.code.fontMetrics().lineSpacing() * 12 + 16)
        self.copy_code = QPushButton("Copy code")
        self.copy_code.setAccessibleName("Copy the code")
        self.copy_code.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.code.toPlainText()))
        code_row = QHBoxLayout()
        code_row.addWidget(QLabel("Call it from"))
        code_row.addWidget(self.language)
        code_row.addStretch(1)
        code_row.addWidget(self.copy_code)
        return code_row

    @property
    def base_url(self) -> str | None:
        return self.server.base_url if self.server is not None and self.state == "running" else None

    def reach_url(self) -> str:
        """Where a client calls: the running server's address (this machine's on the network when it listens on
        every address), else the address the form would start it on."""
        host = self.address.text().strip() or "127.0.0.1"
        port = self.server.port if self.server is not None and self.state == "running" else self.port.value() or 8000
        if host in ("0.0.0.0", "::"):
            host = lan_address() or "127.0.0.1"
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}/v1"

    def _model_switched(self, *_) -> None:  # any thread

        if shiboken6.isValid(self):
            self._sig_model_changed.emit()

    def show_snippet(self, *_) -> None:
        model = self.host.name or self.settings.current.model
        self.code.setPlainText(snippet(self.language.currentText(), base_url=self.reach_url(), model=model,
                                       key=self.key.text().strip() or None))

    def _share_on_lan(self, on: bool) -> None:
        """Every address with a key (made here when there is none), or this computer only."""
        self.address.setText("0.0.0.0" if on else "127.0.0.1")
        if on and not self.key.text().strip():
            self.key.setText(f"lantern-{secrets.token_urlsafe(18)}")
        self.show_snippet()

    def start(self) -> None:
        if self.state in ("starting", "running"):
            return
        host, port, key = self.address.text().strip(), self.port.value(), self.key.text().strip() or None
        try:
            self.settings.update(server_host=host, server_port=port, server_api_key=key)
        except Exception as e:  # a bad address or port: say so, start nothing
            return self._set_state("failed", f"Not started: {e}")
        self._set_state("starting", "Starting…")
        model = self.host.name or self.settings.current.model
        run_task(lambda: self._start(model, host, port, key), self._started,
                 lambda e: self._set_state("failed", f"Not started: {e}"))

    def _start(self, model: str, host: str, port: int, key: str | None):  # on a pool thread
        # deferred: fastapi and uvicorn (~250 ms), only once the server is started
        from app.server.api import ServerSettings
        from app.server.run import LanternServer, check_bind

        settings = ServerSettings(host=host, port=port, api_key=key, on_request=self._sig_finished.emit)
        check_bind(settings)  # beyond this computer only with a key; before any model loads
        service = ModelService(model, models=self.model_names, open_worker=self.host.use, owns_workers=False)
        self.host.subscribe(service.adopt)  # the window switched models: the endpoint follows
        try:
            return LanternServer(service, settings).start()
        except BaseException:
            self.host.unsubscribe(service.adopt)
            raise

    def _started(self, server) -> None:
        self.server = server
        shared = server.settings.host in ("0.0.0.0", "::")
        self._set_state("running", f"{server.base_url}  ·  on your network: {self.reach_url()} (with the API key)"
                        if shared else server.base_url)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        self._set_state("stopping", "Stopping…")
        self.host.unsubscribe(server.service.adopt)
        run_task(server.stop, lambda _: self._set_state("stopped", "Not running."),
                 lambda e: self._set_state("stopped", f"Stopped with an error: {e}"))

    def stop_and_wait(self) -> None:
        """At exit: stop on this thread."""
        if self.server is not None:
            self.host.unsubscribe(self.server.service.adopt)
            self.server.stop()
            self.server = None

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        self.url.setText(text)
        self.copy_url.setEnabled(state == "running")
        self.toggle.setText("Stop the server" if state == "running" else "Start the server")
        self.toggle.setEnabled(state in ("running", "stopped", "failed"))
        for w in (self.address, self.port, self.key, self.lan):
            w.setEnabled(state in ("stopped", "failed"))
        self.show_snippet()

    def _logged(self, entry: dict) -> None:
        at_end = self.log.verticalScrollBar().value() >= self.log.verticalScrollBar().maximum() - 2
        if self.log.rowCount() >= LOG_ROWS:
            self.log.removeRow(0)
        row = self.log.rowCount()
        self.log.insertRow(row)
        tip = _details(entry)
        for column, text in enumerate(log_row(entry)):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            if column == 3 and entry["status"] >= 400:
                item.setForeground(QColor("#c0392b"))  # a refusal stands out
            self.log.setItem(row, column, item)
        if at_end:
            self.log.scrollToBottom()


def _details(entry: dict) -> str:
    lines = [f"{entry['method']} {entry['path']} → {entry['status']} in {entry['ms']:.0f} ms"]
    if entry.get("error"):
        lines.append(entry["error"])
    if figures := entry.get("figures"):
        s = figures["stats"]
        lines.append(f"{s.prompt_tokens} prompt tokens ({s.cached_tokens} reused, {s.prefill_tokens} computed), "
                     f"{s.completion_tokens} written; first token after {s.ttft_ms:.0f} ms, "
                     f"{s.decode_tokens_per_s:.1f} tokens/s; ended: {figures['finish_reason']}")
    return "\n".join(lines)
