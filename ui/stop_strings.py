"""Stop strings typed one a line; a line break inside one is written \\n (and a backslash \\\\)."""
from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit


def stop_strings(text: str) -> list[str]:
    """The typed lines as stop strings: escapes turned into the characters, empty lines left out."""
    out = []
    for line in text.splitlines():
        if line:
            out.append(line.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\"))
    return out


def stop_text(strings: list[str]) -> str:
    return "\n".join(s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for s in strings)


class StopStringsField(QPlainTextEdit):
    def __init__(self, strings: list[str] | None = None, parent=None):
        super().__init__(stop_text(strings or []), parent)
        self.setPlaceholderText("one a line, such as ###  or  \\n\\n")
        lines = self.fontMetrics().lineSpacing()
        self.setFixedHeight(3 * lines + 12)
        self.setTabChangesFocus(True)

    def strings(self) -> list[str]:
        return stop_strings(self.toPlainText())

    def set_strings(self, strings: list[str]) -> None:
        self.setPlainText(stop_text(strings))
