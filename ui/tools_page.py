"""The Tools page: the MCP servers in mcp.json (add, edit, remove; enable or disable each; its state and tools, or
why it failed; values of its environment and headers shown masked) and Lantern's own tools, each off until turned
on. Enabling a server starts it; nothing starts before that."""
from __future__ import annotations

import shlex
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton,
                               QVBoxLayout, QWidget)

from app.settings import SettingsFile
from app.tools.builtin import BUILTINS, FILES_LIST, FILES_READ
from app.tools.mcp_config import (MASK, McpConfigError, ServerConfig, parse_config, remove_server, replace_server,
                                  server_from_json, set_enabled)
from app.tools.mcp_host import FAILED, READY, STARTING, McpHost
from basics.errors import LanternError

STATE_WORDS = {"off": "Off", STARTING: "Starting…", READY: "Ready", FAILED: "Failed"}


class ToolsPage(QWidget):
    _sig_changed = Signal(str)  # a server's state changed (from the host's thread)

    def __init__(self, host: McpHost, settings: SettingsFile, parent=None):
        super().__init__(parent)
        self.host, self.settings = host, settings
        layout = QVBoxLayout(self)
        heading = QLabel("<h2>Tools</h2>The model can call these from a chat; every call waits for your answer "
                         "unless you allowed that tool for the chat.", self)
        heading.setWordWrap(True)
        layout.addWidget(heading)

        layout.addWidget(QLabel("<b>MCP servers</b> (mcp.json, the shape LM Studio, Claude Desktop and Cursor use)"))
        self.servers = QListWidget(self)
        self.servers.setAccessibleName("MCP servers")
        self.servers.itemChanged.connect(self._toggled)
        self.servers.currentItemChanged.connect(lambda *_: self._show_details())
        layout.addWidget(self.servers, 1)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAccessibleName("The server's state and tools")
        layout.addWidget(self.details)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add server…", self)
        self.edit_button = QPushButton("Edit…", self)
        self.remove_button = QPushButton("Remove", self)
        self.paste_button = QPushButton("Paste mcp.json…", self)
        for b in (self.add_button, self.edit_button, self.remove_button, self.paste_button):
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        self.add_button.clicked.connect(lambda: self._edit(None))
        self.edit_button.clicked.connect(lambda: self._edit(self._current()))
        self.remove_button.clicked.connect(self._remove)
        self.paste_button.clicked.connect(self._paste)

        layout.addWidget(QLabel("<b>Lantern's own tools</b> (each off until you turn it on)"))
        self.builtins: dict[str, QCheckBox] = {}
        for tool in BUILTINS:
            box = QCheckBox(tool.title, self)
            box.setChecked(tool.name in settings.current.builtin_tools)
            box.toggled.connect(self._builtins_changed)
            self.builtins[tool.name] = box
            layout.addWidget(box)
        folder_row = QHBoxLayout()
        self.folder = QLabel(settings.current.tools_folder or "No folder chosen", self)
        self.folder.setAccessibleName("The folder the file tools may read")
        self.folder_button = QPushButton("Choose folder…", self)
        self.folder_button.clicked.connect(self._choose_folder)
        folder_row.addWidget(QLabel("Files in:"))
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.folder_button)
        layout.addLayout(folder_row)
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        layout.addWidget(self.notice)

        self._sig_changed.connect(lambda _name: self.refresh())
        host.on_change = self._sig_changed.emit  # any thread: the signal brings it to this one
        self.refresh()

    # -- the list -------------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        current = self._current()
        self.servers.blockSignals(True)
        self.servers.clear()
        for s in self.host.servers():
            item = QListWidgetItem(f"{s.name} · {s.config.transport} · {STATE_WORDS.get(s.status, s.status)}"
                                   + (f" · {len([t for t in s.tools if not t.problem])} tools" if s.status == READY
                                      else ""))
            item.setData(Qt.ItemDataRole.UserRole, s.name)
            if s.config.problem:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
            else:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if s.config.enabled else Qt.CheckState.Unchecked)
            item.setToolTip(s.why or s.config.shown())
            self.servers.addItem(item)
            if s.name == current:
                self.servers.setCurrentItem(item)
        self.servers.blockSignals(False)
        has = self._current() is not None
        self.edit_button.setEnabled(has)
        self.remove_button.setEnabled(has)
        self._show_details()

    def _current(self) -> str | None:
        item = self.servers.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _show_details(self) -> None:
        state = self.host.state(self._current()) if self._current() else None
        if state is None:
            self.details.setText("No MCP servers yet: add one, or paste your mcp.json." if not self.host.servers()
                                 else "")
            return
        lines = [f"Runs: {state.config.shown() or '-'}"]
        if state.why:
            lines.append(f"Why it failed: {state.why}")
        if state.tools:
            lines.append("Tools: " + ", ".join(t.name + (f" (not offered: {t.problem})" if t.problem else "")
                                               for t in state.tools[:60]))
        if state.note:
            lines.append(state.note)
        if state.resources or state.prompts:
            lines.append(f"{len(state.resources)} resources, {len(state.prompts)} prompts")
        self.details.setText("\n".join(lines))

    # -- changes --------------------------------------------------------------------------------------------------

    def _toggled(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        on = item.checkState() == Qt.CheckState.Checked
        try:
            set_enabled(self.host.path, name, on)
        except (LanternError, OSError) as e:
            self.notice.setText(str(e))
            return
        self.host.reload()
        if on:
            self.host.start(name)  # started now; its state follows in the list
        else:
            self.host.stop(name)
        self.refresh()

    def _edit(self, name: str | None) -> None:
        state = self.host.state(name) if name else None
        dialog = ServerDialog(state.config if state else None, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.save_server(dialog.server(), old_name=name)

    def save_server(self, server: ServerConfig, *, old_name: str | None = None) -> bool:
        """Add or change a server (kept off until enabled); the reason in words when it cannot be."""
        if server.problem:
            self.notice.setText(server.problem)
            return False
        try:
            replace_server(self.host.path, server, old_name=old_name)
        except (LanternError, OSError) as e:
            self.notice.setText(str(e))
            return False
        if old_name:
            self.host.stop(old_name)
        self.host.reload()
        self.notice.setText("")
        self.refresh()
        return True

    def _remove(self) -> None:
        name = self._current()
        if name is None:
            return
        self.host.stop(name)
        remove_server(self.host.path, name)
        self.host.reload()
        self.refresh()

    def _paste(self) -> None:
        dialog = PasteDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.paste(dialog.text())

    def paste(self, text: str) -> int:
        """Add the servers of a pasted mcp.json (each off until enabled); how many were added."""
        try:
            pasted = parse_config(text)
        except McpConfigError as e:
            self.notice.setText(f"That is not an mcp.json: {e}.")
            return 0
        added, problems = 0, []
        for server in pasted.servers:
            if server.problem:
                problems.append(server.problem)
                continue
            try:
                replace_server(self.host.path, replace(server, enabled=False))
                added += 1
            except (LanternError, OSError) as e:
                problems.append(str(e))
        self.host.reload()
        self.refresh()
        self.notice.setText(f"Added {added} server{'s' * (added != 1)}, each off until you enable it."
                            + (" Not added: " + " ".join(problems) if problems else ""))
        return added

    def _builtins_changed(self) -> None:
        on = [name for name, box in self.builtins.items() if box.isChecked()]
        self.settings.update(builtin_tools=on)
        if any(n in on for n in (FILES_LIST.name, FILES_READ.name)) and not self.settings.current.tools_folder:
            self.notice.setText("Choose the folder the file tools may read.")

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The folder the model may read")
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str) -> None:
        self.settings.update(tools_folder=folder)
        self.folder.setText(folder)


class ServerDialog(QDialog):
    """Add or edit one server: a command (stdio) or a URL (streamable HTTP); environment values and headers as
    NAME=value lines, shown masked until edited."""

    def __init__(self, server: ServerConfig | None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("MCP server")
        self._old = server
        form = QFormLayout(self)
        self.name = QLineEdit(server.name if server else "", self)
        self.kind = QComboBox(self)
        self.kind.addItems(["Command (stdio)", "URL (streamable HTTP)"])
        self.kind.setCurrentIndex(1 if server and server.url else 0)
        self.command = QLineEdit(shlex.join([server.command, *server.args]) if server and server.command else "",
                                 self)
        self.url = QLineEdit(server.url if server else "", self)
        pairs = (server.headers if server and server.url else server.env if server else ())
        self.pairs = QPlainTextEdit("\n".join(f"{k}={MASK}" for k, _ in pairs), self)
        self.pairs.setAccessibleName("Environment values or headers, NAME=value, one a line")
        self._masked = {k: v for k, v in pairs}
        form.addRow("Name", self.name)
        form.addRow("Kind", self.kind)
        form.addRow("Command", self.command)
        form.addRow("URL", self.url)
        form.addRow("Environment / headers", self.pairs)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def server(self) -> ServerConfig:
        """What the dialog says, checked as an mcp.json entry would be (a masked value keeps the one it had)."""
        pairs = {}
        for line in self.pairs.toPlainText().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                key = key.strip()
                pairs[key] = self._masked.get(key, "") if value == MASK else value
        entry: dict = {"enabled": bool(self._old and self._old.enabled)}
        if self.kind.currentIndex() == 1:
            entry.update(url=self.url.text().strip(), headers=pairs)
        else:
            try:
                words = shlex.split(self.command.text())
            except ValueError as e:
                return ServerConfig(name=self.name.text(), problem=f"The command cannot be read: {e}.")
            entry.update(command=words[0] if words else "", args=words[1:], env=pairs)
            if not words:
                entry.pop("command")
        return server_from_json(self.name.text().strip(), entry)


class PasteDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Paste mcp.json")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Paste an mcp.json (LM Studio, Claude Desktop, Cursor): its servers are added, each "
                                "off until you enable it."))
        self.editor = QPlainTextEdit(self)
        layout.addWidget(self.editor)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def text(self) -> str:
        return self.editor.toPlainText()
