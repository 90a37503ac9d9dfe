"""First start: the starter model at once, and the catalog models that fit this machine."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout

from models.registry import STARTER_MODEL

SUGGESTIONS = 3
MIN_CHAT_SPEED = 8.0  # estimated tokens a second: slower models fit but answer too slowly to chat with


class Welcome(QFrame):
    sig_use_model = Signal(str)
    sig_download = Signal(object)  # a CatalogEntry

    def __init__(self, models_page, parent=None):
        super().__init__(parent)
        self.models_page = models_page
        self.setObjectName("welcome")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setAccessibleName("Welcome")
        # its full height whatever the window's: the messages' area gives way (it scrolls), never the welcome
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        intro = QLabel("<b>Welcome to Lantern.</b> Chat right away with the starter model, a small one that is "
                       "already on this computer, or download a bigger one that fits this machine.", wordWrap=True)
        top.addWidget(intro, 1)  # wraps: a long line would widen the whole window
        self.close_button = QPushButton("×")
        self.close_button.setFlat(True)
        self.close_button.setAccessibleName("Close the welcome")
        self.close_button.setToolTip("Close the welcome")
        self.close_button.clicked.connect(self.hide)
        top.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(top)
        row = QHBoxLayout()
        self.starter_button = QPushButton(f"Chat with {STARTER_MODEL}")
        self.starter_button.setAccessibleName("Chat with the starter model")
        self.starter_button.setProperty("primary", True)
        self.starter_button.clicked.connect(self._use_starter)
        row.addWidget(self.starter_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.suggestions = QVBoxLayout()
        self.checking = QLabel("Checking which models fit this machine…")
        self.suggestions.addWidget(self.checking)
        layout.addLayout(self.suggestions)
        self.suggested: list = []
        models_page.sig_fits_ready.connect(self._fits_ready)
        if models_page.fits:
            self._fits_ready()

    def _use_starter(self) -> None:
        self.sig_use_model.emit(STARTER_MODEL)
        self.hide()

    def _fits_ready(self) -> None:
        hw = self.models_page.hardware
        fits = self.models_page.fits
        wanted = "mlx" if hw is not None and hw.apple_silicon else "gguf"
        order = {"gpu": 0, "partial": 1, "cpu": 2}
        speeds = self.models_page.catalog_view.speeds
        candidates = [e for e in self.models_page.catalog
                      if e.format == wanted and e.kind == "chat" and fits.get(e.name)
                      and fits[e.name].verdict in order and speeds.get(e.name, 0) >= MIN_CHAT_SPEED]
        # The biggest that answer at a chatting pace come first: the GPU before the CPU, then more parameters.
        candidates.sort(key=lambda e: (order[fits[e.name].verdict], -e.params_b))
        self.suggested = candidates[:SUGGESTIONS]
        self.checking.setText("Models that fit this machine:" if self.suggested else
                              "No catalog model fits this machine's free memory; the starter model does.")
        for e in self.suggested:
            row = QHBoxLayout()
            row.addWidget(QLabel(f"{e.title} ({e.size_bytes / 1e9:.1f} GB, {fits[e.name].badge})", wordWrap=True), 1)
            button = QPushButton("Download")
            button.setAccessibleName(f"Download {e.title}")
            button.clicked.connect(lambda _=False, e=e: (self.sig_download.emit(e), self.hide()))
            row.addWidget(button)
            self.suggestions.addLayout(row)
