"""A catalog entry drawn as a card: its title and shape, what it can do, and a pill with its fit here and its
estimated speed (a delegate: the catalog's list holds no widget per row)."""
from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

from ui.theme import RADIUS, SPACE, look

CELLS = Qt.ItemDataRole.UserRole + 1  # a card's texts: title, shape, abilities, fit, speed, verdict
HEADING = Qt.ItemDataRole.UserRole + 2  # a group's title (a heading row has no card)
# the fit pill's colour
PILL = {"gpu": "good", "partial": "warn", "cpu": "muted", "helpers": "warn", "no": "error", "": "muted"}


class CardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        line = QFontMetrics(option.font).lineSpacing()
        if index.data(HEADING):
            return QSize(200, line + SPACE["l"])
        return QSize(300, 3 * line + 2 * SPACE["m"] + SPACE["xs"] * 2)

    def paint(self, painter: QPainter, option, index) -> None:
        c = look()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(option.font)
        if heading := index.data(HEADING):
            font.setBold(True)
            font.setPointSizeF(font.pointSizeF() * 0.85)
            painter.setFont(font)
            painter.setPen(QColor(c["muted"]))
            painter.drawText(option.rect.adjusted(SPACE["xs"], 0, 0, -SPACE["xs"]),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, heading.upper())
            painter.restore()
            return
        cells = index.data(CELLS) or {}
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        card = QRectF(option.rect.adjusted(1, SPACE["xs"], -1, -SPACE["xs"]))
        path = QPainterPath()
        path.addRoundedRect(card, RADIUS["m"], RADIUS["m"])
        painter.fillPath(path, QColor(c["accent_soft"] if selected else c["hover"] if hovered else c["page"]))
        painter.setPen(QPen(QColor(c["accent"] if selected else c["card_border"]), 1))
        painter.drawPath(path)
        inner = card.toRect().adjusted(SPACE["m"], SPACE["m"] - 2, -SPACE["m"], -SPACE["m"] + 2)
        line = QFontMetrics(font).lineSpacing()
        # right: the fit pill, the speed under it
        pill_font = QFont(font)
        pill_font.setPointSizeF(font.pointSizeF() * 0.9)
        pill_font.setBold(True)
        pm = QFontMetrics(pill_font)
        fit = cells.get("fit", "")
        pill_w = pm.horizontalAdvance(fit) + 2 * SPACE["s"]
        pill = QRect(inner.right() - pill_w, inner.top(), pill_w, line + 2)
        tone = QColor(c[PILL.get(cells.get("verdict", ""), "muted")])
        soft = QColor(tone)
        soft.setAlpha(40)
        pill_path = QPainterPath()
        pill_path.addRoundedRect(QRectF(pill), (line + 2) / 2, (line + 2) / 2)
        painter.fillPath(pill_path, soft)
        painter.setFont(pill_font)
        painter.setPen(tone)
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, fit)
        painter.setFont(font)
        painter.setPen(QColor(c["muted"]))
        speed_rect = QRect(inner.right() - 220, inner.top() + line + SPACE["xs"], 220, line)
        painter.drawText(speed_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, cells.get("speed", ""))
        # left: the title, its shape, what it can do
        text_w = inner.width() - max(pill_w, 160) - SPACE["m"]
        bold = QFont(font)
        bold.setBold(True)
        bold.setPointSizeF(font.pointSizeF() * 1.05)
        painter.setFont(bold)
        painter.setPen(QColor(c["text"]))
        painter.drawText(QRect(inner.left(), inner.top(), text_w, line + 2), Qt.AlignmentFlag.AlignVCenter,
                         QFontMetrics(bold).elidedText(cells.get("title", ""), Qt.TextElideMode.ElideRight, text_w))
        painter.setFont(font)
        painter.setPen(QColor(c["muted"]))
        for row, key in ((1, "shape"), (2, "abilities")):
            rect = QRect(inner.left(), inner.top() + row * (line + SPACE["xs"]) + 2, text_w, line)
            painter.drawText(rect, Qt.AlignmentFlag.AlignVCenter,
                             QFontMetrics(font).elidedText(cells.get(key, ""), Qt.TextElideMode.ElideRight, text_w))
        painter.restore()
