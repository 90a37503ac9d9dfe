"""The GPU layers setting: a slider over the model's layers with what they take said as it moves, or "as many as
fit" (Lantern measures the free memory at each load)."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QSlider, QWidget

AUTO_LAYERS = -2  # "as many as fit" (None in the settings); -1 is every layer


class GpuLayersField(QWidget):
    valueChanged = Signal(int)  # AUTO_LAYERS, -1 (all) or a count

    def __init__(self, value: int | None, parent=None):
        super().__init__(parent)
        self._fit: Callable[[int], str] | None = None
        self.auto = QCheckBox("As many as fit", self)
        self.auto.setAccessibleName("GPU layers: as many as fit")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setAccessibleName("Layers on the GPU")
        self.slider.setRange(0, 1000 if value is None or value < 0 else max(value, 1))
        self.count = QLabel(self)
        self.count.setMinimumWidth(self.count.fontMetrics().horizontalAdvance("999 / 999"))
        self.fit = QLabel(self)
        self.fit.setObjectName("field-hint")
        self.fit.setWordWrap(True)
        self.fit.setAccessibleName("What these layers take")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.auto, 0, 0, 1, 2)
        grid.addWidget(self.slider, 1, 0)
        grid.addWidget(self.count, 1, 1)
        grid.addWidget(self.fit, 2, 0, 1, 2)
        self.setValue(AUTO_LAYERS if value is None else value)
        self.auto.toggled.connect(self._changed)
        self.slider.valueChanged.connect(self._changed)

    def set_model(self, n_layers: int, fit: Callable[[int], str] | None) -> None:
        """The chosen model's layer count, and what a count of them takes in words (None: not known)."""
        value = self.value()
        self._fit = fit
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n_layers, 1))
        self.slider.setValue(self.slider.maximum() if value < 0 else value)
        self.slider.blockSignals(False)
        self._show()

    def value(self) -> int:
        if self.auto.isChecked():
            return AUTO_LAYERS
        v = self.slider.value()
        return -1 if v == self.slider.maximum() and self._fit is not None else v

    def setValue(self, value: int) -> None:
        self.auto.setChecked(value == AUTO_LAYERS)
        self.slider.setValue(self.slider.maximum() if value < 0 else value)
        self._show()

    def _changed(self, *_) -> None:
        self._show()
        self.valueChanged.emit(self.value())

    def _show(self) -> None:
        self.slider.setEnabled(not self.auto.isChecked())
        v = self.slider.value()
        self.count.setText(f"{v} / {self.slider.maximum()}" if self._fit else str(v))
        if self.auto.isChecked():
            self.fit.setText("Lantern puts as many layers on the GPU as its free memory holds, at each load.")
        else:
            self.fit.setText(self._fit(v) if self._fit else "")
