"""The catalog in the window: a card per model, grouped by where each runs on this machine, with an estimated speed,
filters (kind, size, tools, reasoning, vision), a details drawer, and figures read from the Hub the first time the
user looks at an entry."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QVBoxLayout, QWidget)

from models.catalog import CatalogEntry
from models.fit import check_fit
from models.speed import estimate_tokens_per_s
from ui.catalog_card import CELLS, HEADING, CardDelegate
from ui.catalog_drawer import CatalogDrawer

NAME = Qt.ItemDataRole.UserRole  # a card's entry name
GROUPS = {"gpu": "Runs on the GPU", "partial": "Runs partly on the GPU", "cpu": "Runs on the CPU",
          "helpers": "Runs with helper machines", "no": "Too big for this machine", "": "Checking this machine…"}
SIZES = [("Any size", None), ("Up to 2 GB", 2e9), ("Up to 6 GB", 6e9), ("Up to 12 GB", 12e9), ("Up to 24 GB", 24e9)]


def size_text(e: CatalogEntry) -> str:
    gb = e.size_bytes / 1e9
    text = f"{gb:.1f} GB" if gb >= 1 else f"{e.size_bytes / 1e6:.0f} MB"
    return ("≈ " if e.approximate else "") + text


class CatalogView(QWidget):
    sig_download = Signal(object)  # a CatalogEntry
    sig_look = Signal(object)  # the user selected an entry whose figures are still estimates
    sig_quants_wanted = Signal(object)  # the drawer shows an entry: its repository's files, with their fit

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
        self.list = QListWidget()
        self.list.setObjectName("catalog")
        self.list.setAccessibleName("Catalog")
        self.list.setItemDelegate(CardDelegate(self.list))
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setMouseTracking(True)  # hover states
        self.list.currentItemChanged.connect(self._selected)
        self.drawer = CatalogDrawer(self)
        self.drawer.hide()
        self.drawer.sig_download.connect(self.sig_download)
        self.drawer.sig_closed.connect(lambda: self.list.setCurrentItem(None))
        self.legend = QLabel("Speeds are estimates from this machine's memory bandwidth and each model's active "
                             "parameters. ≈ marks a size not yet read from the Hub; selecting a model reads it.",
                             wordWrap=True)
        self.legend.setObjectName("hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        body = QHBoxLayout()
        body.addWidget(self.list, 1)
        body.addWidget(self.drawer)
        layout.addLayout(body, 1)
        layout.addWidget(self.legend)
        self.refresh()

    # -- what is shown ----------------------------------------------------------------------------

    def shown(self) -> list[CatalogEntry]:
        """The entries the filters let through, in the order shown."""
        kind = "chat" if self.kind.currentIndex() == 0 else "embedding"
        limit = SIZES[self.size.currentIndex()][1]
        keep = [e for e in self.entries if e.kind == kind and (limit is None or e.size_bytes <= limit)
                and (self.mlx or e.format != "mlx")
                and (not self.tools.isChecked() or bool(self.tools_text(e)))
                and (not self.reasoning.isChecked() or e.reasoning) and (not self.vision.isChecked() or e.vision)]
        order = list(GROUPS)
        return sorted(keep, key=lambda e: (order.index(self._verdict(e)), -self.speeds.get(e.name, 0), e.size_bytes))

    def groups(self) -> dict[str, list[str]]:
        """Group title -> entry names, as shown."""
        out: dict[str, list[str]] = {}
        title = ""
        for r in range(self.list.count()):
            item = self.list.item(r)
            if heading := item.data(HEADING):
                title = heading.rsplit(" (", 1)[0]
                out[title] = []
            else:
                out[title].append(item.data(NAME))
        return out

    def row_of(self, name: str) -> QListWidgetItem | None:
        return next((self.list.item(r) for r in range(self.list.count()) if self.list.item(r).data(NAME) == name),
                    None)

    def cells(self, name: str) -> dict[str, str]:
        """What an entry's card says: title, shape, abilities, fit, speed (and the fit's verdict)."""
        item = self.row_of(name)
        return dict(item.data(CELLS)) if item is not None else {}

    def _verdict(self, e: CatalogEntry) -> str:
        fit = self.fits.get(e.name)
        return fit.verdict if fit is not None else ""

    def refresh(self) -> None:
        current = self.list.currentItem()
        keep = current.data(NAME) if current is not None else None
        self.list.blockSignals(True)  # rebuilt: no item outlives clear(), the drawer keeps its entry
        try:
            self.list.clear()
            entries = self.shown()
            counts: dict[str, int] = {}
            for e in entries:
                counts[self._verdict(e)] = counts.get(self._verdict(e), 0) + 1
            heading = None
            for e in entries:
                verdict = self._verdict(e)
                if verdict != heading:
                    heading = verdict
                    row = QListWidgetItem()
                    row.setData(HEADING, f"{GROUPS[verdict]} ({counts[verdict]})")
                    row.setFlags(Qt.ItemFlag.NoItemFlags)
                    self.list.addItem(row)
                item = QListWidgetItem(e.title)
                item.setData(NAME, e.name)
                item.setData(CELLS, self._cells(e))
                item.setToolTip(f"{e.repo}" + (f" · {e.files[0]}" if e.files else " (MLX)") + f" · {e.license}"
                                + (f"\n{self.fits[e.name].summary}" if verdict else "")
                                + ("\n≈: a size not yet read from the Hub; choosing the model reads it."
                                   if e.approximate else ""))
                self.list.addItem(item)
                if e.name == keep:
                    self.list.setCurrentItem(item)
        finally:
            self.list.blockSignals(False)

    @staticmethod
    def tools_text(e: CatalogEntry) -> str:
        return {"": "", "generic": "JSON (generic)"}.get(e.tools, e.tools) if e.kind == "chat" else ""

    def _cells(self, e: CatalogEntry) -> dict[str, str]:
        params = f"{e.params_b:g}B" + (f" ({e.active_b:g}B active)" if e.active_b < e.params_b else "")
        context = f"{e.context_length // 1024}K context"
        abilities = [x for x, on in (("reasoning", e.reasoning), ("vision", e.vision), ("MTP", e.mtp_layers > 0))
                     if on]  # MTP: heads that draft its own tokens (known once its file is read)
        if tools := self.tools_text(e):
            abilities.append(f"tools: {tools}")
        speed = self.speeds.get(e.name)
        fit = self.fits.get(e.name)
        return {"title": e.title, "shape": f"{params} · {size_text(e)} · {context}",
                "abilities": " · ".join(abilities) or ("embeddings" if e.kind == "embedding" else ""),
                "size": size_text(e), "speed": "" if e.kind != "chat" or not speed else f"~{speed:.0f} tokens/s",
                "fit": fit_text(fit) if fit is not None else "checking…", "verdict": fit.verdict if fit else ""}

    # -- changes ----------------------------------------------------------------------------------

    def set_fits(self, fits: dict, speeds: dict, *, mlx: bool = False) -> None:
        self.fits, self.speeds, self.mlx = dict(fits), dict(speeds), mlx
        self.refresh()

    def replace(self, entry: CatalogEntry, fit, speed: float) -> None:
        """An entry whose figures were read from the Hub."""
        self.entries = [entry if e.name == entry.name else e for e in self.entries]
        self.fits[entry.name], self.speeds[entry.name] = fit, speed
        self.refresh()
        if self.drawer.entry is not None and self.drawer.entry.name == entry.name and self.drawer.isVisible():
            quants = self.drawer.quants
            self.drawer.show_entry(entry, fit, speed, self.entries)  # its figures as read
            if quants:
                self.drawer.set_quants(entry.name, quants)

    def _selected(self, item: QListWidgetItem | None, _previous) -> None:
        name = item.data(NAME) if item is not None else None
        entry = next((e for e in self.entries if e.name == name), None)
        if entry is None:
            self.drawer.hide()
            return
        self.drawer.show_entry(entry, self.fits.get(entry.name), self.speeds.get(entry.name, 0.0), self.entries)
        self.sig_quants_wanted.emit(entry)
        if entry.approximate:
            self.sig_look.emit(entry)


def fit_text(fit) -> str:
    """The card's pill: where it runs, with the memory it takes where that is RAM."""
    if fit.verdict in ("cpu", "no"):
        return f"{fit.badge} · {fit.need_bytes / 2 ** 30:.1f} GiB"
    return fit.badge


def estimate(hardware, entry: CatalogEntry, n_ctx: int):
    """(fit, estimated tokens a second) of `entry` on `hardware`."""
    fit = check_fit(hardware, entry.model_info(), n_ctx=n_ctx)
    speed = estimate_tokens_per_s(hardware, size_bytes=entry.size_bytes, params_b=entry.params_b,
                                  active_b=entry.active_b, verdict=fit.verdict, n_gpu_layers=fit.n_gpu_layers,
                                  n_layers=entry.n_layers)
    return fit, speed
