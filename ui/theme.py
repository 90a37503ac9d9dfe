"""Light, dark or the system's look."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette


def apply_theme(theme: str) -> None:
    """`theme`: "system", "light" or "dark"."""
    app = QGuiApplication.instance()
    hints = app.styleHints()
    if hasattr(hints, "setColorScheme"):  # Qt 6.8+: the platform's own light and dark palettes
        hints.setColorScheme({"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(
            theme, Qt.ColorScheme.Unknown))
    if theme == "dark" and not is_dark():  # platforms without a dark palette (offscreen, old Qt)
        app.setPalette(_dark_palette())
    elif theme != "dark":
        app.setPalette(app.style().standardPalette() if hasattr(app, "style") else QPalette())


def is_dark() -> bool:
    app = QGuiApplication.instance()
    return app is not None and app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def _dark_palette() -> QPalette:
    p = QPalette()
    colors = {QPalette.ColorRole.Window: "#1f2125", QPalette.ColorRole.WindowText: "#e6e6e6",
              QPalette.ColorRole.Base: "#17181b", QPalette.ColorRole.AlternateBase: "#24262b",
              QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#2a2d33",
              QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#3d6fd6",
              QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: "#7aa7ff",
              QPalette.ColorRole.ToolTipBase: "#2a2d33", QPalette.ColorRole.ToolTipText: "#e6e6e6",
              QPalette.ColorRole.PlaceholderText: "#8a8f98"}
    for role, color in colors.items():
        p.setColor(role, QColor(color))
    # Disabled controls dimmed (setColor above set every group alike, so Stop while idle looked clickable)
    dim = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(dim, role, QColor("#6b6f78"))
    p.setColor(dim, QPalette.ColorRole.Button, QColor("#24262b"))
    p.setColor(dim, QPalette.ColorRole.Highlight, QColor("#3a3d44"))
    return p
