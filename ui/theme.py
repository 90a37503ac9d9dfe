"""Light, dark or the system's look."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
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


# Design tokens (docs/design.md): one spacing scale, one type scale, corner radii, and colour roles per theme.
SPACE = {"xs": 4, "s": 8, "m": 12, "l": 16, "xl": 24, "xxl": 32}  # px
TYPE = {"caption": 0.85, "body": 1.0, "title": 1.15, "heading": 1.45, "display": 1.9}  # times the system font size
RADIUS = {"s": 6, "m": 10, "l": 14}
COLORS = {
    "light": {"window": "#f4f5f7", "page": "#ffffff", "rail": "#eceef2", "card": "#f6f7f9", "card_border": "#e3e5e8",
              "field": "#ffffff", "field_border": "#d5d8de", "text": "#1f2328", "muted": "#6b7280",
              "accent": "#2f6fd6", "accent_text": "#ffffff", "accent_soft": "#e6eefb", "hover": "#e8ebf0",
              "bubble": "#e9f0fb", "bubble_border": "#d3e0f5", "error": "#b0302a", "good": "#1e7d45",
              "warn": "#9a6700"},
    "dark": {"window": "#1b1c20", "page": "#17181b", "rail": "#131417", "card": "#202227", "card_border": "#2e3138",
             "field": "#1f2125", "field_border": "#3a3e46", "text": "#e6e6e6", "muted": "#9aa0aa",
             "accent": "#7aa7ff", "accent_text": "#0d1526", "accent_soft": "#23304a", "hover": "#2a2d33",
             "bubble": "#253047", "bubble_border": "#33415e", "error": "#ff8a80", "good": "#6fd39a",
             "warn": "#e3b341"},
}
LOOK = COLORS  # the chat's colour roles are the same tokens


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
    QLabel#message-cut {{ color: {c['warn']}; }}
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


def window_style() -> str:
    """The window's style sheet from the tokens: the rail, fields, buttons (a primary one by its `primary`
    property), lists, cards and menus, rounded, with hover and keyboard focus states."""
    c, r, sp = look(), RADIUS, SPACE
    return "".join(part(c, r, sp) for part in (_frame_style, _controls_style, _lists_style, _composer_style))


def _frame_style(c, r, sp) -> str:
    """The window's frame: pages, the navigation rail, the model menu and the header."""
    return f"""
    QMainWindow, #page {{ background: {c['window']}; }}
    QScrollArea {{ background: transparent; }}
    #nav-rail {{ background: {c['rail']}; border-right: 1px solid {c['card_border']}; }}
    #nav-rail QToolButton {{ border: none; border-radius: {r['m']}px; padding: {sp['s']}px {sp['xs']}px;
                             color: {c['muted']}; min-width: 56px; }}
    #nav-rail QToolButton:hover {{ background: {c['hover']}; color: {c['text']}; }}
    #nav-rail QToolButton:checked {{ background: {c['accent_soft']}; color: {c['accent']}; font-weight: 600; }}
    #nav-rail QToolButton:focus {{ outline: none; border: 1px solid {c['accent']}; }}
    #model-menu {{ background: {c['field']}; border: 1px solid {c['card_border']}; border-radius: {r['m']}px; }}
    #model-menu QListWidget {{ border: none; background: transparent; }}
    #header QComboBox {{ font-weight: 600; padding: {sp['xs'] + 1}px {sp['m']}px; border-radius: {r['m']}px; }}
    #header {{ background: {c['page']}; border-bottom: 1px solid {c['card_border']}; }}
    """


def _controls_style(c, r, sp) -> str:
    """Buttons (a primary one by its `primary` property) and fields, with hover and focus states."""
    return f"""
    QToolButton {{ border: 1px solid transparent; border-radius: {r['s']}px; padding: {sp['xs']}px {sp['s'] - 2}px; }}
    QToolButton:hover {{ background: {c['hover']}; }}
    QToolButton:checked {{ background: {c['accent_soft']}; color: {c['accent']}; }}
    QToolButton:focus {{ border-color: {c['accent']}; }}
    QPushButton {{ background: {c['card']}; color: {c['text']}; border: 1px solid {c['card_border']};
                   border-radius: {r['s']}px; padding: {sp['xs'] + 1}px {sp['m']}px; }}
    QPushButton:hover {{ background: {c['hover']}; }}
    QPushButton:focus {{ border-color: {c['accent']}; }}
    QPushButton:disabled {{ color: {c['muted']}; background: {c['card']}; }}
    QPushButton[primary="true"] {{ background: {c['accent']}; color: {c['accent_text']}; border-color: {c['accent']};
                                   font-weight: 600; }}
    QPushButton[primary="true"]:hover {{ background: {c['accent']}; border-color: {c['text']}; }}
    QPushButton[primary="true"]:disabled {{ background: {c['card_border']}; color: {c['muted']};
                                            border-color: {c['card_border']}; }}
    QLineEdit, QPlainTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {{ background: {c['field']}; color: {c['text']};
        border: 1px solid {c['field_border']}; border-radius: {r['s']}px; padding: {sp['xs']}px {sp['s']}px;
        selection-background-color: {c['accent']}; selection-color: {c['accent_text']}; }}
    QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {{
        border: 1px solid {c['accent']}; }}
    QLineEdit:hover, QSpinBox:hover, QDoubleSpinBox:hover, QComboBox:hover {{ border-color: {c['muted']}; }}
    QComboBox::drop-down {{ border: none; width: 22px; }}
    QComboBox::down-arrow {{ image: url({_arrow(c['muted'])}); width: 14px; height: 14px; }}
    QSpinBox::up-button, QDoubleSpinBox::up-button, QSpinBox::down-button, QDoubleSpinBox::down-button {{
        border: none; width: 16px; }}
    QSpinBox::up-arrow, QDoubleSpinBox::up-arrow {{ image: url({_arrow(c['muted'], up=True)}); width: 10px;
                                                    height: 10px; }}
    QSpinBox::down-arrow, QDoubleSpinBox::down-arrow {{ image: url({_arrow(c['muted'])}); width: 10px;
                                                        height: 10px; }}
    QComboBox QAbstractItemView {{ background: {c['field']}; border: 1px solid {c['card_border']};
                                   selection-background-color: {c['accent_soft']}; selection-color: {c['text']}; }}
    """


def _lists_style(c, r, sp) -> str:
    """Lists, tables, groups, tabs, menus, tooltips and the status bar's labels."""
    return f"""
    QListWidget, QTreeWidget, QTableWidget {{ background: {c['page']}; border: 1px solid {c['card_border']};
                                              border-radius: {r['m']}px; }}
    QListWidget#chat-list, QListWidget#catalog {{ background: transparent; border: none; }}
    #welcome {{ background: {c['page']}; border: 1px solid {c['card_border']}; border-radius: {r['m']}px;
                margin: {sp['s']}px {sp['l']}px; padding: {sp['s']}px; }}
    #drawer {{ background: {c['page']}; border: 1px solid {c['card_border']}; border-radius: {r['m']}px; }}
    QListWidget#chat-list::item {{ padding: {sp['s'] - 2}px {sp['s']}px; border-radius: {r['s']}px; }}
    QListWidget#chat-list::item:hover {{ background: {c['hover']}; }}
    QListWidget#chat-list::item:selected {{ background: {c['accent_soft']}; color: {c['text']}; }}
    QHeaderView::section {{ background: {c['card']}; color: {c['muted']}; border: none;
                            border-bottom: 1px solid {c['card_border']}; padding: {sp['xs']}px {sp['s']}px; }}
    QGroupBox {{ background: {c['page']}; border: 1px solid {c['card_border']}; border-radius: {r['m']}px;
                 margin-top: {sp['xl']}px; padding: {sp['m']}px; }}
    QGroupBox::title {{ subcontrol-origin: margin; left: {sp['xs']}px; padding: 0 {sp['xs']}px;
                        color: {c['text']}; font-weight: 600; }}
    QTabWidget::pane {{ border: none; }}
    QTabBar::tab {{ background: transparent; color: {c['muted']}; border: none; padding: {sp['s']}px {sp['m']}px;
                    margin-right: {sp['xs']}px; border-radius: {r['s']}px; }}
    QTabBar::tab:hover {{ background: {c['hover']}; color: {c['text']}; }}
    QTabBar::tab:selected {{ background: {c['accent_soft']}; color: {c['accent']}; font-weight: 600; }}
    QMenu {{ background: {c['field']}; border: 1px solid {c['card_border']}; border-radius: {r['s']}px;
             padding: {sp['xs']}px; }}
    QMenu::item {{ padding: {sp['xs'] + 1}px {sp['l']}px; border-radius: {r['s'] - 2}px; color: {c['text']}; }}
    QMenu::item:selected {{ background: {c['accent_soft']}; }}
    QToolTip {{ background: {c['field']}; color: {c['text']}; border: 1px solid {c['card_border']};
                padding: {sp['xs']}px; }}
    QStatusBar {{ color: {c['muted']}; }}
    QLabel#hint, QLabel#field-hint, QLabel#download-detail {{ color: {c['muted']}; }}
    QLabel#download-failed, QLabel#status-error {{ color: {c['error']}; font-weight: 600; }}
    QLabel#page-title {{ font-size: {_pt('heading')}pt; font-weight: 600; }}
    """


def _composer_style(c, r, sp) -> str:
    """Check boxes, the composer and the scroll bars."""
    return f"""
    QCheckBox::indicator {{ width: 14px; height: 14px; border: 1px solid {c['field_border']}; border-radius: 4px;
                            background: {c['field']}; }}
    QCheckBox::indicator:hover {{ border-color: {c['accent']}; }}
    QCheckBox::indicator:checked {{ background: {c['accent']}; border-color: {c['accent']};
                                    image: url({_check(c['accent_text'])}); }}
    #composer {{ background: {c['field']}; border: 1px solid {c['field_border']}; border-radius: {r['l']}px; }}
    #composer QPlainTextEdit {{ background: transparent; border: none; padding: {sp['xs']}px; }}
    #composer QToolButton {{ border: none; border-radius: {r['m']}px; padding: {sp['xs']}px; }}
    #composer QToolButton:hover {{ background: {c['hover']}; }}
    #composer QToolButton#send {{ background: {c['accent']}; }}
    #composer QToolButton#send:disabled {{ background: {c['card_border']}; }}
    QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
    QScrollBar::handle:vertical {{ background: {c['card_border']}; border-radius: 4px; min-height: 24px; }}
    QScrollBar::handle:vertical:hover {{ background: {c['muted']}; }}
    QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical {{ height: 0; }}
    QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
    QScrollBar::handle:horizontal {{ background: {c['card_border']}; border-radius: 4px; min-width: 24px; }}
    QScrollBar::add-line:horizontal, QScrollBar::sub-line:horizontal {{ width: 0; }}
    """


def _arrow(color: str, *, up: bool = False) -> str:
    """A chevron in `color` as a file a style sheet can name (Qt's SVG reader knows no currentColor)."""
    return _icon_file("chevron-up" if up else "chevron", color,
                      '<path d="m6 15 6-6 6 6"/>' if up else '<path d="m6 9 6 6 6-6"/>')


def _pt(token: str) -> float:
    """A type-scale step in points, from the system font (the user's size setting wins)."""
    base = QGuiApplication.font().pointSizeF() if QGuiApplication.instance() else 10.0
    return round((base if base > 0 else 10.0) * TYPE[token], 1)


def _check(color: str) -> str:
    return _icon_file("check", color, '<path d="M20 6 9 17l-5-5"/>')


def _icon_file(name: str, color: str, path: str) -> str:
    """An icon in `color` as a file a style sheet can name, in the user's own cache folder."""

    folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)) / "style"
    file = folder / f"{name}-{color.lstrip('#')}.svg"
    if not file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        file.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="{color}" '
                        f'stroke-width="3" stroke-linecap="round" stroke-linejoin="round">{path}</svg>')
    return file.as_posix()


def set_role(widget, name: str) -> None:
    """Give `widget` another object name (a role the style sheets colour) and draw it again in that role."""
    if widget.objectName() != name:
        widget.setObjectName(name)
        widget.style().unpolish(widget)
        widget.style().polish(widget)

