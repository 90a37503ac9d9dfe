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


# The chat's own look: the user's messages in a tinted bubble, replies on the page, muted secondary text.
LOOK = {
    "light": {"page": "#ffffff", "bubble": "#e9f0fb", "bubble_border": "#d3e0f5", "muted": "#6b7280",
              "accent": "#2f6fd6", "error": "#b0302a", "card": "#f6f7f9", "card_border": "#e3e5e8"},
    "dark": {"page": "#17181b", "bubble": "#253047", "bubble_border": "#33415e", "muted": "#9aa0aa",
             "accent": "#7aa7ff", "error": "#ff8a80", "card": "#202227", "card_border": "#2e3138"},
}


def look() -> dict[str, str]:
    return LOOK["dark" if is_dark() else "light"]


def chat_style() -> str:
    """The chat page's style sheet for the current theme (set again when the theme changes)."""
    c = look()
    return f"""
    #chat-area, #chat-column {{ background: {c['page']}; }}
    QFrame#message-user {{ background: {c['bubble']}; border: 1px solid {c['bubble_border']}; border-radius: 14px; }}
    QFrame#message-user {{ margin-left: 48px; }}
    QFrame#message-assistant {{ background: transparent; border: none; }}
    QTextBrowser#message-body {{ background: transparent; border: none; }}
    QLabel#speaker {{ font-weight: 600; }}
    QLabel#speaker-model, QLabel#figures, QLabel#typing {{ color: {c['muted']}; }}
    QLabel#message-note {{ color: {c['error']}; }}
    QToolButton#message-action {{ color: {c['muted']}; border: none; padding: 2px 6px; border-radius: 6px; }}
    QToolButton#message-action:hover {{ background: {c['card']}; }}
    QToolButton#jump-to-latest {{ background: {c['card']}; border: 1px solid {c['card_border']}; border-radius: 12px;
                                  padding: 4px 12px; }}
    QToolButton#jump-to-latest:hover {{ border-color: {c['accent']}; }}
    QToolButton#message-action:focus {{ border: 1px solid {c['accent']}; }}
    QFrame#empty-state {{ background: transparent; }}
    QLabel#empty-title {{ font-size: 18pt; font-weight: 600; }}
    QLabel#empty-hint {{ color: {c['muted']}; }}
    QPushButton#example {{ background: {c['card']}; border: 1px solid {c['card_border']}; border-radius: 10px;
                           padding: 10px 14px; text-align: left; }}
    QPushButton#example:hover {{ border-color: {c['accent']}; }}
    QPushButton#example:focus {{ border-color: {c['accent']}; }}
    """
