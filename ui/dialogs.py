"""Questions to the user. Tests replace these (a modal dialog would wait for a click forever)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def confirm(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def save_path(parent: QWidget, title: str, suggested: str, filter: str):
    """Where to save a file, or None if the user cancelled."""

    chosen, _ = QFileDialog.getSaveFileName(parent, title, suggested, filter)
    return Path(chosen) if chosen else None


def open_path(parent: QWidget, title: str, filter: str):
    """Which file to open, or None if the user cancelled."""

    chosen, _ = QFileDialog.getOpenFileName(parent, title, "", filter)
    return Path(chosen) if chosen else None


def open_paths(parent: QWidget, title: str, filter: str) -> list:
    """Which files to open (several may be chosen); [] if the user cancelled."""

    chosen, _ = QFileDialog.getOpenFileNames(parent, title, "", filter)
    return [Path(c) for c in chosen]
