"""The files attached to the message being written, as chips above the message box: name, pages and tokens, or
what is wrong with the file. Files are read and counted off the GUI thread."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QWidget

from app.attachments import Attachment, AttachmentError, describe, read_attachment
from ui.tasks import run_task


class Chip(QToolButton):
    """One file: a click takes it off the message."""

    def __init__(self, path: Path, parent=None):
        super().__init__(parent)
        self.path = path
        self.file: Attachment | None = None
        self.error = ""
        self.tokens: int | None = None
        self.setObjectName("attachment")
        self.setAccessibleName(f"Attached file {path.name}")
        self.setToolTip("Click to take this file off the message")
        self.show_state()

    def show_state(self) -> None:
        if self.error:
            self.setText(f"⚠ {self.error}  ✕")
            self.setStyleSheet("color: #c62828")
        elif self.file is None:
            self.setText(f"{self.path.name} · reading…")
        else:
            tokens = f" · {self.tokens:,} tokens" if self.tokens is not None else ""
            self.setText(f"{describe(self.file)}{tokens}  ✕")


class AttachmentBar(QWidget):
    sig_changed = Signal()  # a file was added, read, counted or removed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.layout_ = QHBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.addStretch(1)
        self.worker = None  # the loaded model's worker, to count tokens with
        self.hide()

    def chips(self) -> list[Chip]:
        return [self.layout_.itemAt(i).widget() for i in range(self.layout_.count() - 1)]

    def add_paths(self, paths: list[Path]) -> None:
        for path in paths:
            chip = Chip(Path(path), self)
            chip.clicked.connect(lambda _=False, c=chip: self.remove(c))
            self.layout_.insertWidget(self.layout_.count() - 1, chip)
            run_task(lambda p=chip.path: read_attachment(p), lambda f, c=chip: self._read(c, f),
                     lambda e, c=chip: self._failed(c, e))
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    def remove(self, chip: Chip) -> None:
        chip.setParent(None)
        chip.deleteLater()
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    def clear(self) -> None:
        for chip in self.chips():
            self.remove(chip)

    @property
    def reading(self) -> bool:
        return any(c.file is None and not c.error for c in self.chips())

    def ready(self) -> list[Attachment]:
        """The files to send; AttachmentError (shown on its chip) if one is still being read, is wrong, or went away
        or changed since it was attached."""
        files = []
        for chip in self.chips():
            if chip.error:
                raise AttachmentError(f"{chip.path.name}: {chip.error} Take it off the message to send.")
            if chip.file is None:
                raise AttachmentError(f"{chip.path.name} is still being read.")
            try:
                chip.file.still_there()
            except AttachmentError as e:
                self._failed(chip, e)
                raise
            files.append(chip.file)
        return files

    def _read(self, chip: Chip, file: Attachment) -> None:
        if chip.parent() is None:
            return  # taken off while it was read
        chip.file = file
        chip.show_state()
        self.sig_changed.emit()
        worker = self.worker
        if worker is not None:  # counted by the model's own tokenizer, on its thread
            def count(e):
                return len(e.runtime.tokenize(file.text, add_bos=False, parse_special=False)), e.runtime.n_ctx

            run_task(lambda: worker.call(count).result(timeout=300), lambda r: self._counted(chip, *r),
                     lambda _e: None)  # no model to count with: the chip shows no count

    def _counted(self, chip: Chip, tokens: int, n_ctx: int) -> None:
        if chip.parent() is None:
            return
        chip.tokens = tokens
        if tokens >= n_ctx:  # a file that does not fit is said at once, not when the reply fails
            chip.error = (f"{chip.path.name} is {tokens:,} tokens, more than this model's context ({n_ctx:,}); "
                          "attach a shorter part, or load the model with a larger context.")
        chip.show_state()
        self.sig_changed.emit()

    def _failed(self, chip: Chip, error: BaseException) -> None:
        if chip.parent() is None:
            return
        chip.error = str(error) if isinstance(error, AttachmentError) else f"{chip.path.name} cannot be read: {error}"
        chip.show_state()
        self.sig_changed.emit()
