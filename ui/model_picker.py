"""The header's model picker: a button with the model's name that opens a searchable list of the local models, each
with its size, quantization and context, and its fit and estimated speed on this machine."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (QApplication, QComboBox, QFrame, QLabel, QLineEdit, QListWidget, QListWidgetItem, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout)

from models.library import LocalModel

DETAILS = Qt.ItemDataRole.UserRole + 1
FIT = Qt.ItemDataRole.UserRole + 2  # "fits on the GPU · ~85 tokens/s", once the machine is known
INDEX = Qt.ItemDataRole.UserRole + 3  # the picker's row a menu row stands for


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


class _TwoLines(QStyledItemDelegate):
    """A model in the open menu: its name, and under it its details and fit in a quieter colour."""

    def paint(self, painter, option, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        name, opt.text = opt.text, ""
        style = opt.widget.style() if opt.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        painter.save()
        rect = opt.rect.adjusted(10, 4, -10, -4)
        half = rect.height() // 2
        bold = QFont(opt.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(opt.palette.color(QPalette.ColorRole.Text))
        painter.drawText(rect.adjusted(0, 0, 0, -half), Qt.AlignmentFlag.AlignVCenter, name)
        painter.setFont(opt.font)
        painter.setPen(opt.palette.color(QPalette.ColorRole.PlaceholderText))
        line = " · ".join(x for x in (index.data(DETAILS), index.data(FIT)) if x)
        painter.drawText(rect.adjusted(0, half, 0, 0), Qt.AlignmentFlag.AlignVCenter, line)
        painter.restore()

    def sizeHint(self, option, index) -> QSize:
        return QSize(360, row_height(option.fontMetrics))


def row_height(metrics) -> int:
    return metrics.lineSpacing() * 2 + 14


class ModelMenu(QFrame):
    """The picker's open list: type to narrow it, Enter or a click picks."""

    def __init__(self, picker: "ModelPicker"):
        super().__init__(picker, Qt.WindowType.Popup)
        self.picker = picker
        self.setObjectName("model-menu")
        self.search = QLineEdit(self, placeholderText="Search models", clearButtonEnabled=True)
        self.search.setAccessibleName("Search models")
        self.list = QListWidget(self)
        self.list.setAccessibleName("Models")
        self.list.setItemDelegate(_TwoLines(self.list))
        self.empty = QLabel("No model matches.", self)
        self.empty.setObjectName("hint")
        self.empty.hide()
        for i in range(picker.count()):
            item = QListWidgetItem(picker.itemText(i))
            item.setData(INDEX, i)
            item.setData(DETAILS, picker.itemData(i, DETAILS))
            item.setData(FIT, picker.fits.get(picker.itemText(i), ""))
            item.setToolTip(picker.itemData(i, Qt.ItemDataRole.ToolTipRole) or "")
            self.list.addItem(item)
            if i == picker.currentIndex():
                self.list.setCurrentItem(item)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.search)
        layout.addWidget(self.list)
        layout.addWidget(self.empty)
        self.search.textChanged.connect(self._narrow)
        self.search.installEventFilter(self)  # arrows move in the list, Enter picks
        self.list.itemActivated.connect(self._pick)
        self.list.itemClicked.connect(self._pick)
        rows = min(max(picker.count(), 1), 8)
        self.resize(max(picker.width(), 460), rows * row_height(self.list.fontMetrics()) + 32
                    + self.search.sizeHint().height() + 16)

    def names(self) -> list[str]:
        """The models listed now (the search narrows them)."""
        return [self.list.item(r).text() for r in range(self.list.count()) if not self.list.item(r).isHidden()]

    def _narrow(self, text: str) -> None:
        words = text.casefold().split()
        first = None
        for r in range(self.list.count()):
            item = self.list.item(r)
            hay = f"{item.text()} {item.data(DETAILS)} {item.data(FIT)}".casefold()
            item.setHidden(not all(w in hay for w in words))
            if first is None and not item.isHidden():
                first = item
        self.empty.setVisible(first is None)
        if first is not None:
            self.list.setCurrentItem(first)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.search and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if (item := self.list.currentItem()) is not None and not item.isHidden():
                    self._pick(item)
                return True
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up):
                self._step(1 if key == Qt.Key.Key_Down else -1)
                return True
        return super().eventFilter(watched, event)

    def _step(self, by: int) -> None:
        rows = [r for r in range(self.list.count()) if not self.list.item(r).isHidden()]
        if not rows:
            return
        now = self.list.currentRow()
        at = rows.index(now) if now in rows else -1
        self.list.setCurrentRow(rows[max(0, min(len(rows) - 1, at + by))])

    def _pick(self, item: QListWidgetItem) -> None:
        index = item.data(INDEX)
        self.close()
        self.picker.setCurrentIndex(index)
        self.picker.activated.emit(index)  # as the combo box's own list does: picking loads


class ModelPicker(QComboBox):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.fits: dict[str, str] = {}  # name -> its fit and speed here
        self.menu: ModelMenu | None = None
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

    def showPopup(self) -> None:
        """Our own list (searchable, two lines a model) in place of the combo box's."""
        if self.menu is not None:
            self.menu.deleteLater()
        self.menu = ModelMenu(self)
        self.menu.move(self.mapToGlobal(self.rect().bottomLeft()))
        self.menu.show()
        self.menu.search.setFocus()

    def hidePopup(self) -> None:
        if self.menu is not None:
            self.menu.close()
        super().hidePopup()

    def set_fits(self, fits: dict[str, str]) -> None:
        """Each local model's fit and speed on this machine (computed off the GUI thread)."""
        self.fits = dict(fits)
        for i in range(self.count()):
            name = self.itemText(i)
            tip = f"{name}: {self.itemData(i, DETAILS)}" + (f" · {fits[name]}" if fits.get(name) else "")
            self.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self._explain()

    def details(self, name: str) -> str:
        index = self.findText(name)
        return self.itemData(index, DETAILS) if index >= 0 else ""

    def _explain(self, *_) -> None:
        self.setToolTip(self.itemData(self.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")

