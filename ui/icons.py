"""Lantern's own icons: small SVGs in ui/icons, drawn in the theme's text colour.

The SVGs say `currentColor`, which Qt's renderer does not know: it is replaced by the colour before drawing. A
button remembers its icon's name, so a change of theme can draw every icon again in the new colour.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QAbstractButton, QWidget

from ui.theme import look

ICONS = Path(__file__).with_name("icons")
SIZES = (16, 20, 24, 32, 48, 64)


@lru_cache(maxsize=128)
def _icon(name: str, color: str, dimmed: str) -> QIcon:
    source = (ICONS / f"{name}.svg").read_bytes()
    icon = QIcon()
    # The disabled look drawn in the theme's own disabled colour: Qt's derived one stays bright on a dark theme
    for mode, ink in ((QIcon.Mode.Normal, color), (QIcon.Mode.Disabled, dimmed)):
        renderer = QSvgRenderer(QByteArray(source.replace(b"currentColor", ink.encode())))
        for size in SIZES:
            pixmap = QPixmap(size, size)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            renderer.render(painter, QRectF(0, 0, size, size))
            painter.end()
            icon.addPixmap(pixmap, mode)
    return icon


def icon(name: str, color: str | None = None) -> QIcon:
    """The icon `name` (a file in ui/icons), in `color` or the theme's button text colour."""
    app = QGuiApplication.instance()
    palette = app.palette() if app else QPalette()
    dimmed = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText).name()
    return _icon(name, color or palette.color(QPalette.ColorRole.ButtonText).name(), dimmed)


def set_icon(button: QAbstractButton, name: str, token: str = "") -> None:
    """`token`: a colour of ui.theme's tokens (the send button's icon on the accent), else the text colour."""
    button.setProperty("lantern_icon", name)
    button.setProperty("lantern_icon_token", token)
    button.setIcon(_themed(name, token))


def _themed(name: str, token: str) -> QIcon:
    if not token:
        return icon(name)

    return icon(name, look()[token])


def refresh_icons(root: QWidget) -> None:
    """Every icon under `root` drawn again in the current theme's colour."""
    for button in root.findChildren(QAbstractButton):
        if name := button.property("lantern_icon"):
            button.setIcon(_themed(name, button.property("lantern_icon_token") or ""))
