"""Models: the catalog with fit badges for this machine, Hub search, downloads, and the local models."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                               QWidget)

from app.settings import Settings
from machine.hardware import detect
from models.catalog import CatalogEntry, load_catalog, read_from_hub, remember_figures
from models.fit import check_fit
from models.hub import HubClient
from models.library import LocalModel, ModelLibrary
from ui import dialogs
from ui.catalog_view import CatalogView, estimate
from ui.downloads_panel import DownloadsPanel
from ui.import_dialog import ask_import
from ui.tasks import run_task
from ui.theme import set_role


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _table(headers: list[str], name: str) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.horizontalHeader().setSectionResizeMode(0, t.horizontalHeader().ResizeMode.Stretch)
    t.resizeColumnsToContents()  # headers whole from the start ("Fit on this machine" was cut)
    t.setAccessibleName(name)
    return t


def _button(label: str, accessible: str, slot) -> QPushButton:
    b = QPushButton(label)
    b.setAccessibleName(accessible)
    b.clicked.connect(slot)
    return b


STATUS_FADE_MS = 15_000  # news under the pages goes after this; errors stay until the user moves on


class ModelsPage(QWidget):
    sig_library_changed = Signal()
    sig_use_model = Signal(str)  # the user chose a local model to chat with
    sig_fits_ready = Signal()  # the catalog's fit for this machine is known (self.fits)
    sig_hardware_found = Signal(object)  # machine.hardware.Hardware

    def __init__(self, library: ModelLibrary, make_client: Callable[[], HubClient], settings: Callable[[], Settings],
                 parent=None):
        super().__init__(parent)
        self.library, self.make_client, self.settings = library, make_client, settings
        self.hardware = None  # detected off the GUI thread
        self.catalog = load_catalog(figures_dir=library.root)
        self.fits: dict[str, object] = {}  # catalog name -> models.fit.Fit
        self._looking: set[str] = set()  # entries being read from the Hub
        self.tabs = QTabWidget(self)
        self.status = QLabel(wordWrap=True)
        self.status.setAccessibleName("Models status")
        self._status_fade = QTimer(self, singleShot=True, interval=STATUS_FADE_MS)
        self._status_fade.timeout.connect(lambda: self.status.setText(""))
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.downloads = DownloadsPanel(make_client, self)
        self.downloads.sig_model_downloaded.connect(self._downloaded)
        self.tabs.addTab(self._catalog_tab(), "Catalog")
        self.tabs.addTab(self._hub_tab(), "Hugging Face Hub")
        self.tabs.addTab(self.downloads, "Downloads")
        self.tabs.addTab(self._local_tab(), "On this computer")
        self.tabs.currentChanged.connect(self._clear_error)
        self.refresh_local()
        self.detect_hardware()

    def detect_hardware(self) -> None:
        """Look at this machine and ask the helper machines of Settings what they have (on a pool thread); a model
        too big for this machine then shows "fits with 2 machines" where they hold the rest."""
        helpers = self.asked_helpers = tuple(self.settings().helpers)

        def found(hardware) -> None:
            if helpers == self.asked_helpers:  # an answer to helpers since changed again is dropped
                self._hardware_found(hardware)

        run_task(lambda: _detect_hardware(helpers), found,
                 lambda e: self.show_status(f"Hardware detection failed: {e}", error=True))

    def show_status(self, text: str, *, error: bool = False) -> None:
        """A line under the pages; news fades after a while, an error stays (in red) until the next news or until
        the user moves to another tab, so no old failure reads as the state of things now."""
        self.status.setText(text)
        set_role(self.status, "status-error" if error else "status")
        if error:
            self._status_fade.stop()
        else:
            self._status_fade.start()

    def _clear_error(self, *_) -> None:
        if self.status.objectName() == "status-error":
            self.show_status("")

    # -- catalog ----------------------------------------------------------------------------------

    def _catalog_tab(self) -> QWidget:
        self.catalog_view = CatalogView(self.catalog)
        self.catalog_view.sig_download.connect(self.download_entry)
        self.catalog_view.sig_look.connect(self.look_up)
        self.catalog_view.sig_quants_wanted.connect(self.list_quants)
        return self.catalog_view

    def _hardware_found(self, hardware) -> None:
        self.hardware = hardware
        self.sig_hardware_found.emit(hardware)
        n_ctx = self.settings().n_ctx or 4096
        speeds = {}
        for e in self.catalog:
            self.fits[e.name], speeds[e.name] = estimate(hardware, e, n_ctx)
        self.catalog_view.set_fits(self.fits, speeds, mlx=hardware.apple_silicon)
        self.sig_fits_ready.emit()

    def fit_badges(self) -> list[str]:
        return [self.fits[e.name].badge if e.name in self.fits else "checking…" for e in self.catalog_view.shown()]

    def download_entry(self, entry: CatalogEntry):
        self.tabs.setCurrentWidget(self.downloads)
        return self.downloads.start(entry.spec(), title=entry.title, name=entry.name)

    def look_up(self, entry: CatalogEntry) -> None:
        """Read an entry's size and shape from the Hub (once: they are kept), then place it again."""
        if entry.name in self._looking:
            return
        self._looking.add(entry.name)
        root = self.library.root

        def read():
            checked = read_from_hub(self.make_client(), entry)
            remember_figures(root, checked)
            return checked

        def failed(e):
            self._looking.discard(entry.name)
            self.show_status(f"{entry.title}: its figures stay estimates; the Hub could not be read "
                             f"({str(e).rstrip('.')}).", error=True)

        run_task(read, self._looked_up, failed)

    def list_quants(self, entry: CatalogEntry) -> None:
        """The drawer's quantizations: the entry's repository's model files, each with its fit here."""
        hw, n_ctx, make = self.hardware, self.settings().n_ctx or 4096, self.make_client
        view = self.catalog_view

        def read():
            listing = make().listing(entry.repo)
            info = entry.model_info()
            out = []
            for choice in listing.choices:
                fit = check_fit(hw, dataclasses.replace(info, size_bytes=choice.size_bytes), n_ctx=n_ctx) \
                    if hw is not None else None
                out.append((choice, fit.badge if fit else "checking…", fit.summary if fit else ""))
            return out

        run_task(read, lambda quants: view.drawer.set_quants(entry.name, quants),
                 lambda e: view.drawer.set_quants(entry.name, None, str(e)))

    def _looked_up(self, entry: CatalogEntry) -> None:
        self._looking.discard(entry.name)
        self.catalog = [entry if e.name == entry.name else e for e in self.catalog]
        fit, speed = (estimate(self.hardware, entry, self.settings().n_ctx or 4096) if self.hardware is not None
                      else (None, 0.0))
        if fit is not None:
            self.fits[entry.name] = fit
        self.catalog_view.replace(entry, fit, speed)
        self.show_status(f"{entry.title}: {entry.size_bytes / 1e9:.2f} GB, read from the Hub.")

    # -- the Hub ----------------------------------------------------------------------------------

    def _hub_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.hub_query = QLineEdit(placeholderText="Search the Hub, such as: qwen 0.5b")
        self.hub_query.setAccessibleName("Hub search")
        self.hub_query.returnPressed.connect(self.search_hub)
        self.hub_format = QComboBox()
        self.hub_format.addItems(["gguf", "mlx"])
        self.hub_format.setAccessibleName("Model format")
        row.addWidget(self.hub_query, 1)
        row.addWidget(self.hub_format)
        row.addWidget(_button("Search", "Search the Hub", self.search_hub))
        self.hub_busy = QProgressBar()  # a search offline takes a moment to say so: show that it runs
        self.hub_busy.setRange(0, 0)
        self.hub_busy.setMaximumHeight(6)
        self.hub_busy.setTextVisible(False)
        self.hub_busy.setAccessibleName("Searching")
        self.hub_busy.hide()
        self.hub_results = QListWidget()
        self.hub_results.setAccessibleName("Hub results")
        self.hub_results.currentItemChanged.connect(lambda item, _: item and self.open_repo(
            item.data(Qt.ItemDataRole.UserRole)))
        self.hub_files = _table(["File", "Size", "Fit on this machine", ""], "Repository files")
        layout.addLayout(row)
        layout.addWidget(self.hub_busy)
        layout.addWidget(self.hub_results, 1)
        layout.addWidget(self.hub_files, 1)
        return tab

    def search_hub(self) -> None:
        query, fmt = self.hub_query.text().strip(), self.hub_format.currentText()
        self.show_status(f"Searching the Hub for “{query}”…")
        self.hub_busy.show()
        run_task(lambda: self.make_client().search(query, format=fmt), self._found, self._hub_failed)

    def _found(self, models) -> None:
        self.hub_busy.hide()
        self.hub_results.clear()
        for m in models:
            item = QListWidgetItem(f"{m.repo}   ↓{m.downloads:,}" + ("   (gated)" if m.gated else ""))
            item.setData(Qt.ItemDataRole.UserRole, m.repo)
            self.hub_results.addItem(item)
        self.show_status(f"{len(models)} repositories found." if models else "Nothing found.")

    def _hub_failed(self, error: BaseException) -> None:
        self.hub_busy.hide()
        self.show_status(str(error), error=True)  # HubError says what happened and what to do

    def open_repo(self, repo: str) -> None:
        self.show_status(f"Reading {repo}…")
        hardware, n_ctx = self.hardware, self.settings().n_ctx or 4096
        run_task(lambda: _listing_with_fit(self.make_client(), repo, hardware, n_ctx), self._listed, self._hub_failed)

    def _listed(self, result) -> None:
        listing, fits = result
        self.hub_files.setRowCount(len(listing.choices))
        for row, (choice, fit) in enumerate(zip(listing.choices, fits)):
            self.hub_files.setItem(row, 0, QTableWidgetItem(choice.label))
            self.hub_files.setItem(row, 1, QTableWidgetItem(_mb(choice.size_bytes)))
            self.hub_files.setItem(row, 2, QTableWidgetItem(fit))
            spec = f"{listing.repo}:{choice.label}" if choice.label != "mlx" else listing.repo
            self.hub_files.setCellWidget(row, 3, _button(
                "Download", f"Download {listing.repo} {choice.label}",
                lambda _=False, s=spec, t=f"{listing.repo} ({choice.label})": self.download_spec(s, t)))
        self.hub_files.resizeColumnsToContents()
        self.show_status(f"{listing.repo}: {len(listing.choices)} models." if listing.choices
                         else f"{listing.repo} holds no GGUF or MLX model.")

    def download_spec(self, spec: str, title: str):
        self.tabs.setCurrentWidget(self.downloads)
        return self.downloads.start(spec, title=title)

    # -- local models -----------------------------------------------------------------------------

    def _local_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.local_table = _table(["Name", "Backend", "Quant", "Size on disk", "Source", "", ""], "Local models")
        row = QHBoxLayout()
        row.addWidget(_button("Import a GGUF file…", "Import a GGUF file", self._import_clicked))
        row.addStretch(1)
        layout.addWidget(self.local_table, 1)
        layout.addLayout(row)
        return tab

    def refresh_local(self) -> None:
        """Read the local models (each file's header: file work, so off the GUI thread)."""
        run_task(self.library.list, self._show_local, lambda e: self.show_status(f"Local models: {e}", error=True))

    def _show_local(self, models: list[LocalModel]) -> None:
        self.local_table.setRowCount(len(models))
        for row, m in enumerate(models):
            size = "0 (links to your file)" if m.linked else _mb(m.size_bytes)
            for col, text in enumerate([m.name, m.backend, m.quant, size, m.source + (f": {m.repo}" if m.repo else "")]):
                self.local_table.setItem(row, col, QTableWidgetItem(text))
            self.local_table.setCellWidget(row, 5, _button("Chat", f"Chat with {m.name}",
                                                           lambda _=False, n=m.name: self.sig_use_model.emit(n)))
            delete = _button("Delete", f"Delete {m.name}", lambda _=False, m=m: self._delete_clicked(m))
            delete.setEnabled(m.source != "builtin")
            self.local_table.setCellWidget(row, 6, delete)
        self.local_table.resizeColumnsToContents()
        self.local_table.horizontalHeader().setStretchLastSection(False)
        self.local_table.horizontalHeader().setSectionResizeMode(0, self.local_table.horizontalHeader().ResizeMode.Stretch)

    def local_names(self) -> list[str]:
        return [self.local_table.item(r, 0).text() for r in range(self.local_table.rowCount())]

    def _delete_clicked(self, model: LocalModel) -> None:
        if dialogs.confirm(self, "Delete model", f"Delete {model.name} ({_mb(model.size_bytes)})?"):
            self.delete_model(model.name)

    def delete_model(self, name: str) -> None:
        run_task(lambda: self.library.remove(name), lambda freed: self._deleted(name, freed),
                 lambda e: self.show_status(f"{name} could not be deleted: {e}", error=True))

    def _deleted(self, name: str, freed: int) -> None:
        self.show_status(f"Deleted {name}: {_mb(freed)} freed.")
        self.refresh_local()
        self.sig_library_changed.emit()

    def _import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF file", "", "GGUF models (*.gguf)")
        if not path:
            return

        if (choice := ask_import(self, Path(path), self.library)) is not None:  # copy or link, and its name
            name, link = choice
            self.import_file(path, link=link, name=name)

    def import_file(self, path: str, *, link: bool = False, name: str | None = None) -> None:
        """Copy (or link) a GGUF file into the library, off the GUI thread."""
        self.show_status(f"Importing {path}…")
        run_task(lambda: self.library.import_path(path, link=link, name=name), self._imported,
                 lambda e: self.show_status(f"Import failed: {e}", error=True))

    def _imported(self, models: list[LocalModel]) -> None:
        self.show_status("Imported " + ", ".join(m.name for m in models) + ".")
        self.refresh_local()
        self.sig_library_changed.emit()

    def _downloaded(self, model: LocalModel) -> None:
        self.show_status(f"Downloaded {model.name}.")
        self.refresh_local()
        self.sig_library_changed.emit()


def _detect_hardware(helpers: tuple[str, ...] = ()):
    return detect(helpers)


def _listing_with_fit(client: HubClient, repo: str, hardware, n_ctx: int):
    """A repository's models, each with its fit for this machine (a header read per model, on a pool thread)."""
    listing = client.listing(repo)
    fits = []
    for choice in listing.choices:
        try:
            info = client.describe(listing, choice)
            fits.append(check_fit(hardware, info, n_ctx=n_ctx).badge if hardware and info else "unknown")
        except Exception:  # the header could not be read: the size alone is still worth showing
            fits.append("unknown")
    return listing, fits
