"""A model's chat template, replaced for this model only (a fixed template for a model whose own is broken, or a
simpler one). Checked before it is saved: it must compile in the sandbox and render a short conversation."""
from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout

from basics.errors import LanternError
from chat_format.chat_template import ChatTemplate, Message


def check_template(source: str) -> str:
    """'' when `source` works as a chat template, else what is wrong (in the user's words)."""
    if not source.strip():
        return "The template is empty."
    try:
        prompt = ChatTemplate(source).render([Message("system", "Be brief."), Message("user", "Hi"),
                                              Message("assistant", "Hello."), Message("user", "Bye")])
    except LanternError as e:
        return str(e)
    except Exception as e:  # whatever else a template raises: said, never a crash
        return f"The template fails: {e}"
    if "Bye" not in prompt:
        return "The template leaves out the user's message (a test conversation's last message is not in it)."
    return ""


class TemplateDialog(QDialog):
    """Edit `model`'s template override; after accept(), `template` is the new override (None: the model's own)."""

    def __init__(self, model: str, override: str | None, own: str | None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Chat template for {model}")
        self.template: str | None = override
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"The Jinja template that turns a chat into {model}'s prompt. A change applies to "
                                "this model only, when it is loaded again.", wordWrap=True))
        self.editor = QPlainTextEdit(self)
        self.editor.setAccessibleName("Chat template")
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setPlainText(override or own or "")
        self.editor.setMinimumSize(560, 320)
        layout.addWidget(self.editor, 1)
        self.problem = QLabel(wordWrap=True)
        self.problem.setAccessibleName("What is wrong with the template")
        self.problem.setStyleSheet("color: #c62828")
        self.problem.hide()
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self)
        self.own_button = buttons.addButton("Use the model's own", QDialogButtonBox.ButtonRole.ResetRole)
        self.own_button.setEnabled(override is not None)
        self.own_button.clicked.connect(self._use_own)
        buttons.accepted.connect(self._save)
        buttons.rejected.connect(self.reject)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        layout.addWidget(buttons)

    def _save(self) -> None:
        source = self.editor.toPlainText()
        if problem := check_template(source):
            self.problem.setText(problem)
            self.problem.show()
            return
        self.template = source
        self.accept()

    def _use_own(self) -> None:
        self.template = None
        self.accept()
