"""A message's text: a QTextBrowser as tall as its text (the chat scrolls as one page), which loads nothing but the
formulas its Markdown drew."""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QRectF, Qt, QUrl
from PySide6.QtGui import QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser

from ui.markdown import math_svg

_images: dict = {}  # (formula key, pixel ratio) -> QImage


def _math_image(key: str, ratio: float):
    if (key, ratio) in _images:
        return _images[(key, ratio)]
    svg = math_svg(key)
    if svg is None:
        return None
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    size = renderer.defaultSize()
    image = QImage(max(1, int(size.width() * ratio)), max(1, int(size.height() * ratio)),
                   QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, image.width(), image.height()))
    painter.end()
    image.setDevicePixelRatio(ratio)
    if len(_images) > 512:
        _images.clear()
    _images[(key, ratio)] = image
    return image


class MessageBody(QTextBrowser):
    """A QTextBrowser as tall as its text, so the chat scrolls as one page."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.setObjectName("message-body")
        self.document().setDefaultStyleSheet("p, li { line-height: 135%; }")  # airier than Qt's default
        self.document().setDocumentMargin(0)  # the text lines up with the speaker's name
        self.document().contentsChanged.connect(self._fit)
        self.collapsed_height: int | None = None  # a long message folded to this height

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def loadResource(self, kind: int, url: QUrl):
        if url.scheme() == "math":  # a formula render_markdown drew: its SVG as an image, sharp on HiDPI screens
            return _math_image(url.path() or url.toString().split(":", 1)[1], self.devicePixelRatioF())
        return None  # nothing else loads: a reply cannot fetch files or URLs

    def _fit(self) -> None:
        self.document().setTextWidth(self.viewport().width())
        height = int(self.document().size().height()) + 4
        if self.collapsed_height is not None:
            height = min(height, self.collapsed_height)
        if self.height() != height:
            self.setFixedHeight(height)
