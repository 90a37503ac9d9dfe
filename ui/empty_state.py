"""What an empty chat shows: what to do, and a few things to try."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QVBoxLayout

from ui.icons import icon

EXAMPLES = (  # (what it is, a few words more, the prompt it puts in the box)
    ("Explain an idea", "how a hash table works", "Explain how a hash table works, with a small example."),
    ("Write some code", "a palindrome check in Python",
     "Write a Python function that checks whether a string is a palindrome."),
    ("Improve a text", "clearer and shorter", "Make this paragraph clearer and shorter:\n\n"),
    ("Plan something", "learning to cook in four weeks", "Give me a plan for learning to cook in four weeks."),
)


class EmptyState(QFrame):
    sig_example_chosen = Signal(str)  # a prompt to put in the message box

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("empty-state")
        self.setAccessibleName("Start a conversation")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 48, 24, 24)
        layout.setSpacing(10)
        self.logo = QLabel(self)
        self.logo.setPixmap(icon("lantern").pixmap(QSize(56, 56)))
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = QLabel("Start a conversation", self)
        self.title.setObjectName("empty-title")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel(self, wordWrap=True)
        self.hint.setObjectName("empty-hint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.logo)
        layout.addWidget(self.title)
        layout.addWidget(self.hint)
        grid = QGridLayout()
        grid.setSpacing(10)
        self.examples: list[QPushButton] = []
        for i, (label, more, prompt) in enumerate(EXAMPLES):
            button = QPushButton(f"{label}\n{more}", self)
            button.setObjectName("example")
            button.setAccessibleName(label)
            button.setToolTip(prompt.strip())
            button.clicked.connect(lambda _=False, p=prompt: self.sig_example_chosen.emit(p))
            grid.addWidget(button, i // 2, i % 2)
            self.examples.append(button)
        layout.addLayout(grid)
        layout.addStretch(1)
        self.set_model("", loaded=False)

    def set_model(self, name: str, *, loaded: bool) -> None:
        """Say what happens when the user writes: which model answers, and whether it must load first."""
        if not name:
            self.hint.setText("Pick a model at the top, then write a message below.")
        elif loaded:
            self.hint.setText(f"{name} is ready. Write a message below, or start from one of these.")
        else:
            self.hint.setText(f"Write a message below: {name} loads when you send it. "
                              "Another model can be picked at the top.")

    def restyle(self) -> None:
        self.logo.setPixmap(icon("lantern").pixmap(QSize(56, 56)))
