"""The files attached to the message being written, as chips above the message box: name, pages and tokens, or
what is wrong with the file. Files are read, counted and indexed off the GUI thread.

A file goes into the message whole while the files fit in half the context; the largest ones beyond that are searched
instead (indexed as soon as that is known, so sending waits for nothing new). A searched file stays with its chat:
every later message there is given the parts that answer it, until its chip is taken off.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QWidget

from app.attachments import VISION_HELP, Attachment, AttachmentError, describe
from app.chat_images import ImageFile, read_any
from app.document_search import DocumentSearchError
from ui.tasks import run_task

INLINE_SHARE = 0.5  # files up to this share of the context go into the message whole
MAX_CHIP_WIDTH = 640


@dataclass(frozen=True)
class SearchedFile:
    file_id: int
    name: str
    parts: int


class Chip(QToolButton):
    """One file: a click takes it off the message (or, for a file this chat searches, off the chat)."""

    def __init__(self, path: Path, parent=None, *, kept: SearchedFile | None = None):
        super().__init__(parent)
        self.path = path
        self.file: Attachment | None = None
        self.error = ""
        self.tokens: int | None = None
        self.search = False  # too large to go whole: searched
        self.indexing: tuple[int, int] | None = None  # parts embedded, of all (written from the indexing thread)
        self.searched: SearchedFile | None = kept  # in the index
        self.kept = kept is not None  # searched by this chat since an earlier message
        self.embedded_by = ""
        self.setObjectName("attachment")
        self.setAccessibleName(f"Attached file {path.name}")
        self.setToolTip("Click to take this file off the chat" if self.kept else
                        "Click to take this file off the message")
        self.show_state()

    def show_state(self) -> None:
        if self.error:
            self.setText(f"⚠ {self.error}  ✕")
            self.setStyleSheet("color: #c62828")
            self.setToolTip(f"{self.error}\nClick to take this file off the message.")
            self.setMaximumWidth(MAX_CHIP_WIDTH)  # a long reason must not widen the window: it is in the tooltip
            return
        if self.kept:
            self.setText(f"🔍 {self.path.name} · searched in this chat ({self.searched.parts:,} parts)  ✕")
            return
        if self.file is None:
            self.setText(f"{self.path.name} · reading…")
            return
        if isinstance(self.file, ImageFile):
            seen = f"{self.tokens:,} image tokens" if self.tokens is not None else f"{self.file.size / 1e3:,.0f} kB"
            self.setText(f"🖼 {self.path.name} · {seen}  ✕")
            return
        tokens = f" · {self.tokens:,} tokens" if self.tokens is not None else ""
        search = ""
        if self.search and self.searched is not None:
            search = f" · searched ({self.searched.parts:,} parts)"
        elif self.search:
            done, total = self.indexing or (0, 0)
            search = f" · indexing to search it {done * 100 // total}%" if total else " · indexing to search it…"
        self.setText(f"{describe(self.file)}{tokens}{search}  ✕")
        if self.search:
            self.setToolTip(f"Larger than half the context: the parts that answer each message are given to the model"
                            f"{f' (found with {self.embedded_by})' if self.embedded_by else ''}. Click to take this "
                            "file off the message.")


class AttachmentBar(QWidget):
    sig_changed = Signal()  # a file was added, read, counted, indexed or removed
    sig_forgotten = Signal(int)  # a searched file's id, taken off the chat

    def __init__(self, parent=None):
        super().__init__(parent)
        self.layout_ = QHBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.addStretch(1)
        self._chips: list[Chip] = []  # in the layout's order
        self.worker = None  # the loaded model's worker, to count tokens with
        self.model_name: str | None = None
        self.documents = None  # app.chat_documents.ChatDocuments: the index, and what embeds
        self.n_ctx: int | None = None
        self._progress = QTimer(self, interval=250)  # redraws indexing chips (their thread only writes numbers)
        self._progress.timeout.connect(self._show_progress)
        self.hide()

    def chips(self) -> list[Chip]:
        return list(self._chips)  # never the layout's items (ui/chat_page.py views() says why)

    def add_paths(self, paths: list[Path]) -> None:
        for path in paths:
            chip = self._add(Chip(Path(path), self))
            run_task(lambda p=chip.path: read_any(p), lambda f, c=chip: self._read(c, f),
                     lambda e, c=chip: self._failed(c, e))
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    def show_kept(self, files: list[SearchedFile]) -> None:
        """The files the open chat searches (replacing any of another chat)."""
        for chip in self.chips():
            if chip.kept:
                self._take_off(chip)
        for f in files:
            self._add(Chip(Path(f.name), self, kept=f))
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    def _add(self, chip: Chip) -> Chip:
        chip.clicked.connect(lambda _=False, c=chip: self.remove(c))
        self.layout_.insertWidget(self.layout_.count() - 1, chip)
        self._chips.append(chip)
        return chip

    def remove(self, chip: Chip) -> None:
        if chip.kept and chip.searched is not None and not chip.error:
            self.sig_forgotten.emit(chip.searched.file_id)
        self._take_off(chip)
        self._plan()
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    def _take_off(self, chip: Chip) -> None:
        if chip in self._chips:
            self._chips.remove(chip)
        chip.setParent(None)
        chip.deleteLater()

    def clear(self) -> None:
        """After sending: the message's files go; the chat's searched files stay."""
        for chip in self.chips():
            if not chip.kept:
                self._take_off(chip)
        self.setVisible(bool(self.chips()))
        self.sig_changed.emit()

    @property
    def reading(self) -> bool:
        return any(c.file is None and not c.error and not c.kept for c in self.chips())

    def inline(self) -> list[Attachment]:
        """The files that go into the message whole, as far as they are read."""
        return [c.file for c in self.chips() if isinstance(c.file, Attachment) and not c.search and not c.error]

    def images(self) -> list[ImageFile]:
        """The images the model was found to see (counted by its projector), for the context meter."""
        return [c.file for c in self.chips() if isinstance(c.file, ImageFile) and c.tokens and not c.error]

    def ready(self) -> tuple[list[Attachment], list[SearchedFile]]:
        """The files to send whole and the files to search; AttachmentError (shown on its chip) if one is still being
        read or indexed, is wrong, or went away or changed since it was attached."""
        files, searched = [], []
        for chip in self.chips():
            if chip.error:
                raise AttachmentError(f"{chip.path.name}: {chip.error} Take it off the message to send.")
            if chip.kept:
                searched.append(chip.searched)
                continue
            if chip.file is None:
                raise AttachmentError(f"{chip.path.name} is still being read.")
            if chip.search and chip.searched is None:
                raise AttachmentError(f"{chip.path.name} is still being indexed; it can be sent when its chip says "
                                      "“searched”.")
            try:
                chip.file.still_there()
            except AttachmentError as e:
                self._failed(chip, e)
                raise
            if chip.search:
                searched.append(chip.searched)
            else:
                files.append(chip.file)
        return files, searched

    def sent(self) -> list[SearchedFile]:
        """The new searched files of the message just sent, to keep with the chat."""
        return [c.searched for c in self.chips() if c.search and not c.kept and c.searched is not None]

    def _read(self, chip: Chip, file: Attachment) -> None:
        if chip not in self._chips:  # taken off (and maybe deleted by Qt): its C++ object may be gone
            return  # taken off while it was read
        chip.file = file
        chip.show_state()
        self.sig_changed.emit()
        worker = self.worker
        if worker is not None and isinstance(file, ImageFile):  # the model's projector counts its positions
            model = self.model_name or "This model"

            def positions(e):
                vision = getattr(e.runtime, "vision", None)
                if vision is None:
                    raise AttachmentError(f"{model} cannot see images. {VISION_HELP}")
                return len(vision.prepare(file.data)[1]), e.runtime.n_ctx

            run_task(lambda: worker.call(positions).result(timeout=300), lambda r: self._counted(chip, *r),
                     lambda e: self._failed(chip, e))
        elif worker is not None:  # counted by the model's own tokenizer, on its thread
            def count(e):
                return len(e.runtime.tokenize(file.text, add_bos=False, parse_special=False)), e.runtime.n_ctx

            run_task(lambda: worker.call(count).result(timeout=300), lambda r: self._counted(chip, *r),
                     lambda _e: None)  # no model to count with: the chip shows no count

    def _counted(self, chip: Chip, tokens: int, n_ctx: int) -> None:
        if chip not in self._chips:  # taken off (and maybe deleted by Qt): its C++ object may be gone
            return
        chip.tokens, self.n_ctx = tokens, n_ctx
        self._plan()
        chip.show_state()
        self.sig_changed.emit()

    def _plan(self) -> None:
        """Whole while the files fit in half the context, smallest first; the rest are searched."""
        if not self.n_ctx:
            return
        counted = sorted((c for c in self.chips() if c.tokens is not None and not c.kept and not c.error
                          and not isinstance(c.file, ImageFile)), key=lambda c: c.tokens)
        used = 0
        for chip in counted:
            used += chip.tokens
            search = used > self.n_ctx * INLINE_SHARE
            if search and not chip.search:
                chip.search = True
                self._index(chip)
            elif not search and chip.search and chip.indexing is None:
                chip.search = False  # room again (another file was taken off); its index stays for later
            chip.show_state()

    def _index(self, chip: Chip) -> None:
        if chip.searched is not None or chip.indexing is not None:
            return
        try:
            if self.documents is None:
                raise DocumentSearchError("Lantern cannot search files here.")
            embeddings = self.documents.embeddings(self.worker, self.model_name)
            index = self.documents.index
        except DocumentSearchError as e:
            self._failed(chip, AttachmentError(f"{chip.path.name} is {chip.tokens:,} tokens, more than half this "
                                               f"model's context ({self.n_ctx:,}), and cannot be searched: {e}"))
            return
        chip.embedded_by = embeddings.label
        chip.indexing = (0, 0)
        file = chip.file

        def progress(done: int, total: int) -> None:  # on the indexing thread: numbers only, drawn by the timer
            chip.indexing = (done, total)

        def index_it():
            file_id = index.add(file.name, file.text, embeddings, kind=file.kind, progress=progress)
            return SearchedFile(file_id, file.name, index.parts(file_id))

        self._progress.start()
        run_task(index_it, lambda s: self._indexed(chip, s), lambda e: self._index_failed(chip, e))

    def _indexed(self, chip: Chip, searched: SearchedFile) -> None:
        if chip not in self._chips:  # taken off (and maybe deleted by Qt): its C++ object may be gone
            return
        chip.indexing, chip.searched = None, searched
        chip.show_state()
        self.sig_changed.emit()

    def _index_failed(self, chip: Chip, error: BaseException) -> None:
        if chip not in self._chips:  # taken off (and maybe deleted by Qt): its C++ object may be gone
            return
        chip.indexing = None
        self._failed(chip, AttachmentError(f"{chip.path.name} could not be indexed to search it: {error}"))

    def _show_progress(self) -> None:
        indexing = [c for c in self.chips() if c.indexing is not None]
        for chip in indexing:
            chip.show_state()
        if not indexing:
            self._progress.stop()

    def _failed(self, chip: Chip, error: BaseException) -> None:
        if chip not in self._chips:  # taken off (and maybe deleted by Qt): its C++ object may be gone
            return
        chip.error = str(error) if isinstance(error, AttachmentError) else f"{chip.path.name} cannot be read: {error}"
        chip.show_state()
        self.sig_changed.emit()
