"""A message's attached file or image opened from the chat: the text as the model was given it (or the picture at
its size), read from the message itself, never from the disk again."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QScrollArea, QVBoxLayout


class FileViewer(QDialog):
    def __init__(self, name: str, text: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(name)
        self.setAccessibleName(f"Attached file {name}")
        self.text = QPlainTextEdit(text, self)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setAccessibleName("The file's text")
        note = QLabel("As the model was given it (a searched file: the excerpts sent with the message).", self)
        note.setObjectName("hint")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.resize(760, 560)


class ImageViewer(QDialog):
    def __init__(self, name: str, data: bytes, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Image")
        self.setAccessibleName("Attached image")
        self.image = QLabel(self)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture = QImage.fromData(data)
        self.image.setPixmap(QPixmap.fromImage(picture))
        scroll = QScrollArea(self)
        scroll.setWidget(self.image)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.resize(min(max(picture.width(), 320) + 40, 1100), min(max(picture.height(), 240) + 80, 800))
