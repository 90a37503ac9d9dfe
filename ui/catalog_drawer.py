"""The catalog's details drawer: what a model is (in words), its license, context, whether it thinks or sees, its
tool-call format, the repository's quantizations with their sizes and fit here, and Download."""
from __future__ import annotations

import dataclasses
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFormLayout, QFrame, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout)

from models.catalog import CatalogEntry
from models.catalog_words import (description, draft_in_words, license_in_words, maker, mtp_in_words,
                                  tools_in_words)
from ui.theme import SPACE


class CatalogDrawer(QFrame):
    sig_download = Signal(object)  # a CatalogEntry: the one shown, or it with another quantization's files
    sig_closed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("drawer")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setAccessibleName("Model details")
        self.entry: CatalogEntry | None = None
        self.quants: list = []  # (FileChoice, fit badge, fit summary) of the repository, once read
        self.title = QLabel(self)
        self.title.setObjectName("page-title")
        self.title.setWordWrap(True)
        self.by = QLabel(self)
        self.by.setObjectName("hint")
        close = QToolButton(self)
        close.setText("✕")
        close.setAccessibleName("Close the details")
        close.clicked.connect(self.close_drawer)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.about = QLabel(self, wordWrap=True)
        self.about.setAccessibleName("About the model")
        self.facts: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        for key in ("License", "Context", "Thinks", "Sees images", "Tool calls", "MTP heads", "Draft model",
                    "Fit here", "Speed here", "Repository"):
            label = QLabel(self, wordWrap=True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setAccessibleName(key)
            self.facts[key] = label
            form.addRow(key, label)
        self.quant_note = QLabel(self, wordWrap=True)
        self.quant_note.setObjectName("hint")
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["Quantization", "Size", "Fit here"])
        self.table.setAccessibleName("Quantizations")
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._show_choice)
        self.download = QPushButton("Download", self)
        self.download.setProperty("primary", True)
        self.download.setAccessibleName("Download this model")
        self.download.clicked.connect(self._download)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(SPACE["l"], SPACE["l"], SPACE["l"], SPACE["l"])
        layout.setSpacing(SPACE["s"])
        layout.addLayout(top)
        layout.addWidget(self.by)
        layout.addWidget(self.about)
        layout.addLayout(form)
        section = QLabel("Quantizations", self)
        section.setObjectName("speaker")
        layout.addWidget(section)
        layout.addWidget(self.quant_note)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.download)
        self.setMinimumWidth(340)
        self.setMaximumWidth(440)

    def show_entry(self, entry: CatalogEntry, fit, speed: float, catalog: list[CatalogEntry] = ()) -> None:
        """`fit`: models.fit.Fit here (None while the machine is checked); `speed`: estimated tokens a second;
        `catalog`: every entry (a small one of the family drafts for this one)."""
        self.entry, self.quants = entry, []
        self.title.setText(entry.title)
        self.by.setText(" · ".join(x for x in (maker(entry), entry.format.upper(), entry.quant) if x))
        self.about.setText(description(entry))
        k = entry.context_length
        self.facts["License"].setText(license_in_words(entry))
        self.facts["Context"].setText(f"{k // 1024:,}K tokens ({k:,})" if k >= 1024 else f"{k} tokens")
        self.facts["Thinks"].setText("yes: it reasons before it answers (Chat settings can turn it off where the "
                                     "model allows)" if entry.reasoning else "no")
        self.facts["Sees images"].setText("yes: attach images in a chat" if entry.vision else "no")
        self.facts["Tool calls"].setText(tools_in_words(entry))
        self.facts["MTP heads"].setText(mtp_in_words(entry))
        self.facts["Draft model"].setText(draft_in_words(entry, list(catalog)))
        self.facts["Fit here"].setText(f"{fit.badge}: {fit.summary}" if fit is not None else "checking this machine…")
        self.facts["Speed here"].setText(f"about {speed:.0f} tokens a second (an estimate)" if speed >= 1 else
                                         "does not run here" if fit is not None and fit.verdict == "no" else "—")
        self.facts["Repository"].setText(entry.repo + (" (estimated figures: read from the Hub on this look)"
                                                       if entry.approximate else ""))
        self.table.setRowCount(0)
        self.quant_note.setText("Reading the repository's files…")
        self.download.setText(f"Download {entry.quant or entry.format.upper()}")
        self.show()

    def set_quants(self, name: str, quants: list | None, error: str = "") -> None:
        """The repository's files for entry `name`: (FileChoice, badge, summary) each; None with `error`."""
        if self.entry is None or self.entry.name != name:
            return  # another model is shown now
        if quants is None:
            self.quant_note.setText(f"The repository's files could not be read: {error.rstrip('.')}. The catalog's "
                                    f"own file ({self.entry.quant}) can still be downloaded.")
            return
        self.quants = quants
        self.quant_note.setText(f"{len(quants)} in {self.entry.repo}; choose one to download it instead."
                                if quants else "The repository lists no model file.")
        self.table.setRowCount(len(quants))
        for row, (choice, badge, summary) in enumerate(quants):
            size = choice.size_bytes / 1e9
            for col, text in enumerate((choice.label, f"{size:.1f} GB" if size >= 1 else
                                        f"{choice.size_bytes / 1e6:.0f} MB", badge)):
                item = QTableWidgetItem(text)
                item.setToolTip(summary)
                self.table.setItem(row, col, item)
            if tuple(choice.files) == tuple(self.entry.files):
                self.table.selectRow(row)

    def chosen(self) -> CatalogEntry | None:
        """The entry to download: the catalog's, or it with the chosen quantization's files."""
        if self.entry is None:
            return None
        rows = self.table.selectionModel().selectedRows()
        if not rows or not self.quants:
            return self.entry
        choice = self.quants[rows[0].row()][0]
        if tuple(choice.files) == tuple(self.entry.files) or not choice.files:
            return self.entry
        label = re.sub(r"[^a-z0-9.]+", "-", choice.label.lower()).strip("-.")[:40] or "other"  # a name from the Hub
        return dataclasses.replace(self.entry, files=tuple(choice.files), quant=choice.label,
                                   size_bytes=choice.size_bytes, name=f"{self.entry.name}-{label}",
                                   title=f"{self.entry.title} {choice.label}")

    def _show_choice(self) -> None:
        if (entry := self.chosen()) is not None:
            self.download.setText(f"Download {entry.quant or entry.format.upper()}")

    def _download(self) -> None:
        if (entry := self.chosen()) is not None:
            self.sig_download.emit(entry)

    def close_drawer(self) -> None:
        self.hide()
        self.sig_closed.emit()
