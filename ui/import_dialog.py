"""Importing a model file: copy it into Lantern's folder or link to it where it is, under a name of the user's."""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QRadioButton, QVBoxLayout,
                               QWidget)

from basics.errors import LanternError
from models.library import ModelLibrary, check_model_name, model_name


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class ImportDialog(QDialog):
    def __init__(self, path: Path, library: ModelLibrary, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import a model")
        self.path, self.library = path, library
        size = path.stat().st_size if path.is_file() else 0
        free = shutil.disk_usage(library.root if library.root.exists() else library.root.parent).free
        self.name = QLineEdit(self)
        self.name.setAccessibleName("Name")
        try:
            self.name.setText(model_name(path.stem))
        except LanternError:
            pass  # no usable name in the file's: the user types one
        self.copy = QRadioButton(f"Copy it into Lantern's folder ({_size(size)}; {_size(free)} free). The original "
                                 "can then be moved or deleted.", self)
        self.link = QRadioButton("Link to it where it is (no copy). Lantern reads the file from there, so keep it "
                                 "in place.", self)
        self.copy.setChecked(size < free)
        self.link.setChecked(size >= free)  # no room for a copy: linking is what can work
        self.copy.setEnabled(size < free)
        for b in (self.copy, self.link):
            b.setAccessibleName(b.text().split(" (")[0])
        self.problem = QLabel(self, wordWrap=True)
        self.problem.setAccessibleName("Problem")
        self.duplicate = QLabel(self, wordWrap=True)  # a warning, not a refusal: a second name may be wanted
        self.duplicate.setAccessibleName("Already imported")
        if (have := library.same_file_as(path)) is not None:
            self.duplicate.setText(f"This file is already in Lantern as “{have}”: importing it again makes a second "
                                   "model of the same file" + (f" (and a copy of {_size(size)})." if size else "."))
        self.duplicate.setVisible(bool(self.duplicate.text()))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("File", QLabel(str(path), wordWrap=True))
        form.addRow("Name", self.name)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.copy)
        layout.addWidget(self.link)
        layout.addWidget(self.duplicate)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.name.textChanged.connect(self._check)
        self._check()

    def _check(self, *_) -> None:
        """Say at once why a name cannot be used (taken, or unsafe as a folder name), and refuse to import it."""
        name, problem = self.name.text().strip(), ""
        try:
            check_model_name(name)
            self.library.check_free_name(name)
        except LanternError as e:
            problem = str(e)
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)

    def choice(self) -> tuple[str, bool]:
        """(name, link)"""
        return self.name.text().strip(), self.link.isChecked()


def ask_import(parent: QWidget, path: Path, library: ModelLibrary) -> tuple[str, bool] | None:
    dialog = ImportDialog(path, library, parent)
    return dialog.choice() if dialog.exec() == QDialog.DialogCode.Accepted else None
