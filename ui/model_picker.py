"""The toolbar's model picker: each local model by name, with its size, quantization and context in the list."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QComboBox, QStyle, QStyledItemDelegate

from models.library import LocalModel

DETAILS = Qt.ItemDataRole.UserRole + 1


def model_details(m: LocalModel) -> str:
    """"98 MB · Q4_1 · 8K context": what a user weighs when picking."""
    size = f"{m.size_bytes / 1e9:.1f} GB" if m.size_bytes >= 1e9 else f"{m.size_bytes / 1e6:.0f} MB"
    parts = [size, m.quant or m.format.upper()]
    if m.context_length:
        parts.append(f"{m.context_length // 1024}K context" if m.context_length >= 1024
                     else f"{m.context_length} context")
    if m.format == "mlx":
        parts.append("MLX")
    if not m.chat_template:
        parts.append("base model")
    return " · ".join(parts)


class _WithDetails(QStyledItemDelegate):
    """The name, then its details in a quieter colour, on one row of the open list."""

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        details = index.data(DETAILS)
        if not details:
            return
        painter.save()
        selected = option.state & QStyle.StateFlag.State_Selected
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        painter.setPen(option.palette.color(role))
        name_width = option.fontMetrics.horizontalAdvance(index.data(Qt.ItemDataRole.DisplayRole) or "")
        rect = option.rect.adjusted(name_width + 24, 0, -6, 0)
        painter.drawText(rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, details)
        painter.restore()

    def sizeHint(self, option, index) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(hint.width() + option.fontMetrics.horizontalAdvance(index.data(DETAILS) or "") + 36,
                     hint.height())


class ModelPicker(QComboBox):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setItemDelegate(_WithDetails(self))
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(24)
        self.currentIndexChanged.connect(self._explain)

    def set_models(self, models: list[LocalModel], current: str | None) -> None:
        self.blockSignals(True)
        try:
            self.clear()
            for m in models:
                self.addItem(m.name)
                details = model_details(m)
                self.setItemData(self.count() - 1, details, DETAILS)
                self.setItemData(self.count() - 1, f"{m.name}: {details}", Qt.ItemDataRole.ToolTipRole)
            if current and self.findText(current) >= 0:
                self.setCurrentText(current)
        finally:
            self.blockSignals(False)
        self._explain()
        fm = self.fontMetrics()  # the open list wide enough for each name and its details
        self.view().setMinimumWidth(max((fm.horizontalAdvance(self.itemText(i) + self.itemData(i, DETAILS)) + 60
                                         for i in range(self.count())), default=0))

    def details(self, name: str) -> str:
        index = self.findText(name)
        return self.itemData(index, DETAILS) if index >= 0 else ""

    def _explain(self, *_) -> None:
        self.setToolTip(self.itemData(self.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")

