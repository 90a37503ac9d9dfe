"""The catalog in the window: grouped by where each model runs on this machine, with an estimated speed, filters
(kind, size, tools, reasoning, vision), and figures read from the Hub the first time the user looks at an entry."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from models.catalog import CatalogEntry

GROUPS = {"gpu": "Runs on the GPU", "partial": "Runs partly on the GPU", "cpu": "Runs on the CPU",
          "no": "Too big for this machine", "": "Checking this machine…"}
SIZES = [("Any size", None), ("Up to 2 GB", 2e9), ("Up to 6 GB", 6e9), ("Up to 12 GB", 12e9), ("Up to 24 GB", 24e9)]
COLUMNS = ["Model", "Size", "Parameters", "Context", "Tool calls", "Speed here (estimate)", "Fit", ""]

def size_text(e: CatalogEntry) -> str:
    gb = e.size_bytes / 1e9
    text = f"{gb:.1f} GB" if gb >= 1 else f"{e.size_bytes / 1e6:.0f} MB"
    return ("≈ " if e.approximate else "") + text

class CatalogView(QWidget):
    sig_download = Signal(object)  # a CatalogEntry
    sig_look = Signal(object)  # the user selected an entry whose figures are still estimates

    def __init__(self, entries: list[CatalogEntry], parent=None):
        super().__init__(parent)
        self.entries = list(entries)
        self.fits: dict[str, object] = {}  # name -> models.fit.Fit
        self.speeds: dict[str, float] = {}  # name -> estimated tokens a second (0: does not run here)
        self.mlx = False  # MLX entries are shown where MLX runs well: Apple silicon
        self.kind = QComboBox()
        self.kind.addItems(["Chat models", "Embedding models"])
        self.kind.setAccessibleName("Kind of model")
        self.size = QComboBox()
        self.size.addItems([label for label, _ in SIZES])
        self.size.setAccessibleName("Largest download")
        self.tools = QCheckBox("Tool calls")
        self.reasoning = QCheckBox("Reasoning")
        self.vision = QCheckBox("Vision")
        self.vision.setToolTip("The model reads images, which you can attach in chat.")
        filters = QHBoxLayout()
        for w in (self.kind, self.size, self.tools, self.reasoning, self.vision):
            filters.addWidget(w)
            (w.currentIndexChanged if isinstance(w, QComboBox) else w.toggled).connect(self.refresh)
        filters.addStretch(1)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setAccessibleName("Catalog")
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.currentItemChanged.connect(self._selected)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, header.ResizeMode.Stretch)
        self.legend = QLabel("Speeds are estimates from this machine's memory bandwidth and each model's active "
                             "parameters. ≈ marks a size not yet read from the Hub; selecting a model reads it.",
                             wordWrap=True)
        self.legend.setObjectName("hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.legend)
        self.refresh()

    # -- what is shown ----------------------------------------------------------------------------

    def shown(self) -> list[CatalogEntry]:
        """The entries the filters let through, in the order shown."""
        kind = "chat" if self.kind.currentIndex() == 0 else "embedding"
        limit = SIZES[self.size.currentIndex()][1]
        keep = [e for e in self.entries if e.kind == kind and (limit is None or e.size_bytes <= limit)
                and (self.mlx or e.format != "mlx")
                and (not self.tools.isChecked() or (e.tools and e.tools != "generic"))
                and (not self.reasoning.isChecked() or e.reasoning) and (not self.vision.isChecked() or e.vision)]
        order = list(GROUPS)
        return sorted(keep, key=lambda e: (order.index(self._verdict(e)), -self.speeds.get(e.name, 0), e.size_bytes))

    def groups(self) -> dict[str, list[str]]:
        """Group title -> entry names, as shown."""
        out: dict[str, list[str]] = {}
        for i in range(self.tree.topLevelItemCount()):
            g = self.tree.topLevelItem(i)
            out[g.text(0).rsplit(" (", 1)[0]] = [g.child(j).data(0, Qt.ItemDataRole.UserRole)
                                                 for j in range(g.childCount())]
        return out

    def row_of(self, name: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            g = self.tree.topLevelItem(i)
            for j in range(g.childCount()):
                if g.child(j).data(0, Qt.ItemDataRole.UserRole) == name:
                    return g.child(j)
        return None

    def _verdict(self, e: CatalogEntry) -> str:
        fit = self.fits.get(e.name)
        return fit.verdict if fit is not None else ""

    def refresh(self) -> None:
        current = self.tree.currentItem()
        keep = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else None
        self.tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        entries = self.shown()
        for e in entries:
            verdict = self._verdict(e)
            if verdict not in groups:
                g = groups[verdict] = QTreeWidgetItem(self.tree, [GROUPS[verdict]])
                g.setFirstColumnSpanned(True)
                g.setFlags(Qt.ItemFlag.ItemIsEnabled)
                font = g.font(0)
                font.setBold(True)
                g.setFont(0, font)
            item = QTreeWidgetItem(groups[verdict], self._cells(e))
            item.setData(0, Qt.ItemDataRole.UserRole, e.name)
            item.setToolTip(0, f"{e.repo}" + (f" · {e.files[0]}" if e.files else " (MLX)") + f" · {e.license}")
            if verdict:
                item.setToolTip(6, self.fits[e.name].summary)
            if e.approximate:
                item.setToolTip(1, "An estimate: not yet read from the Hub. Selecting the model reads it.")
            button = QPushButton("Download")
            button.setAccessibleName(f"Download {e.title}")
            button.clicked.connect(lambda _=False, e=e: self.sig_download.emit(e))
            self.tree.setItemWidget(item, len(COLUMNS) - 1, button)
        for g in groups.values():
            g.setText(0, f"{g.text(0)} ({g.childCount()})")
            g.setExpanded(True)
        for col in range(1, len(COLUMNS)):
            self.tree.resizeColumnToContents(col)
        if keep is not None and (item := self.row_of(keep)) is not None:
            self.tree.setCurrentItem(item)

    def _cells(self, e: CatalogEntry) -> list[str]:
        params = f"{e.params_b:g}B" + (f", {e.active_b:g}B active" if e.active_b < e.params_b else "")
        extras = [x for x, on in (("reasoning", e.reasoning), ("vision", e.vision)) if on]
        title = e.title + (f"  ·  {', '.join(extras)}" if extras else "")
        speed = self.speeds.get(e.name)
        speed_text = "" if e.kind != "chat" or not speed else f"~{speed:.0f} tokens/s"
        fit = self.fits.get(e.name)
        tools = {"": "", "generic": "JSON (generic)"}.get(e.tools, e.tools)
        return [title, size_text(e), params, f"{e.context_length // 1024}k", tools, speed_text,
                fit.badge if fit is not None else "checking…"]

    # -- changes ----------------------------------------------------------------------------------

    def set_fits(self, fits: dict, speeds: dict, *, mlx: bool = False) -> None:
        self.fits, self.speeds, self.mlx = dict(fits), dict(speeds), mlx
        self.refresh()

    def replace(self, entry: CatalogEntry, fit, speed: float) -> None:
        """An entry whose figures were read from the Hub."""
        self.entries = [entry if e.name == entry.name else e for e in self.entries]
        self.fits[entry.name], self.speeds[entry.name] = fit, speed
        self.refresh()

    def _selected(self, item: QTreeWidgetItem | None, _previous) -> None:
        name = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        entry = next((e for e in self.entries if e.name == name), None)
        if entry is not None and entry.approximate:
            self.sig_look.emit(entry)

def estimate(hardware, entry: CatalogEntry, n_ctx: int):
    """(fit, estimated tokens a second) of `entry` on `hardware`."""
    from models.fit import check_fit
    from models.speed import estimate_tokens_per_s

    fit = check_fit(hardware, entry.model_info(), n_ctx=n_ctx)
    speed = estimate_tokens_per_s(hardware, size_bytes=entry.size_bytes, params_b=entry.params_b,
                                  active_b=entry.active_b, verdict=fit.verdict, n_gpu_layers=fit.n_gpu_layers,
                                  n_layers=entry.n_layers)
    return fit, speed
