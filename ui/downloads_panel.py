"""Downloads with progress bars: cancel keeps the partial file, resume picks it up where it stopped."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from models.downloads import Download
from models.hub import HubClient
from models.hub_errors import DownloadCancelled
from ui.theme import set_role

POLL_MS = 100  # the pull thread only records its progress; the bar reads it ten times a second


class DownloadRow(QWidget):
    sig_finished = Signal(object)  # the LocalModel
    sig_failed = Signal(str)
    sig_dismissed = Signal()

    def __init__(self, make_client: Callable[[], HubClient], spec: str, *, title: str, name: str | None = None,
                 parent=None):
        super().__init__(parent)
        self.spec, self.title, self.name = spec, title, name
        self._make_client = make_client
        self.download: Download | None = None
        self.state = "idle"  # downloading, cancelled, failed, done
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        text = QVBoxLayout()
        self.label = QLabel(title)
        self.detail = QLabel("", wordWrap=True)
        self.detail.setObjectName("download-detail")
        text.addWidget(self.label)
        text.addWidget(self.detail)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName(f"Download progress of {title}")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName(f"Cancel the download of {title}")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setAccessibleName(f"Resume the download of {title}")
        self.resume_button.clicked.connect(self.start)
        self.dismiss_button = QPushButton("Dismiss", self)  # a finished, failed or cancelled row leaves the list
        self.dismiss_button.setAccessibleName(f"Dismiss the download of {title}")
        self.dismiss_button.clicked.connect(self.sig_dismissed)
        self.dismiss_button.setVisible(False)
        layout.addLayout(text, 2)
        layout.addWidget(self.bar, 2)
        layout.addWidget(self.cancel_button)
        layout.addWidget(self.resume_button)
        layout.addWidget(self.dismiss_button)
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.start()

    @property
    def fraction(self) -> float:
        return self.bar.value() / 1000

    def start(self) -> None:
        if self.state == "downloading":
            return

        self.state = "downloading"
        self.detail.setText("Starting…")
        set_role(self.detail, "download-detail")
        self.cancel_button.setVisible(True)
        self.resume_button.setVisible(False)
        self.dismiss_button.setVisible(False)
        self.download = Download(self._make_client(), self.spec, name=self.name)
        self._timer.start()

    def cancel(self) -> None:
        if self.download is not None and self.state == "downloading":
            self.download.cancel()
            self.detail.setText("Cancelling…")

    def _poll(self) -> None:
        d = self.download
        if d is None:
            return
        p = d.latest
        if p is not None and p.total_bytes:
            self.bar.setValue(int(1000 * p.done_bytes / p.total_bytes))
            eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            self.detail.setText(f"{p.done_bytes / 1e6:.0f} of {p.total_bytes / 1e6:.0f} MB, "
                                f"{p.bytes_per_s / 1e6:.1f} MB/s{eta}")
        if not d.done:
            return
        self._timer.stop()
        try:
            model = d.result(0)
        except DownloadCancelled:
            self._stopped("cancelled", "Cancelled: Resume continues where it stopped.")
        except Exception as e:  # HubError with what went wrong: disk full, cut connection, checksum...
            self._stopped("failed", f"Failed: {e}")
            self.sig_failed.emit(str(e))
        else:
            self.state = "done"
            self.bar.setValue(1000)
            self.detail.setText(f"Done: {model.name}, {model.size_bytes / 1e6:.0f} MB")
            self.cancel_button.setVisible(False)
            self.resume_button.setVisible(False)
            self.dismiss_button.setVisible(True)
            self.sig_finished.emit(model)

    def _stopped(self, state: str, text: str) -> None:
        self.state = state
        self.detail.setText(text)
        set_role(self.detail, "download-failed" if state == "failed" else "download-detail")  # a failure stands out
        self.cancel_button.setVisible(False)
        self.resume_button.setVisible(True)
        self.resume_button.setText("Resume" if state == "cancelled" else "Retry")
        self.dismiss_button.setVisible(True)


class DownloadsPanel(QWidget):
    sig_model_downloaded = Signal(object)  # LocalModel

    def __init__(self, make_client: Callable[[], HubClient], parent=None):
        super().__init__(parent)
        self._make_client = make_client
        self.rows: list[DownloadRow] = []
        layout = QVBoxLayout(self)
        self.empty = QLabel("Nothing is downloading. Pick a model in the catalog or on the Hub.")
        layout.addWidget(self.empty)
        self.list = QVBoxLayout()
        layout.addLayout(self.list)
        layout.addStretch(1)

    def start(self, spec: str, *, title: str, name: str | None = None) -> DownloadRow:
        existing = next((r for r in self.rows if r.spec == spec and r.state != "done"), None)
        if existing is not None:  # one pull per file: a second click resumes the first
            existing.start()
            return existing
        row = DownloadRow(self._make_client, spec, title=title, name=name, parent=self)
        row.sig_finished.connect(self.sig_model_downloaded)
        row.sig_dismissed.connect(lambda: self.dismiss(row))
        self.rows.append(row)
        self.list.addWidget(row)
        self.empty.hide()
        return row

    def dismiss(self, row: DownloadRow) -> None:
        """Take a row that is not downloading off the list (a cancelled pull's partial file stays for later)."""
        if row.state == "downloading" or row not in self.rows:
            return
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.empty.setVisible(not self.rows)

    def cancel_all(self, timeout: float = 30.0) -> None:
        """At exit: stop every pull (partial files stay for the next start) and wait for the threads."""
        for r in self.rows:
            if r.download is not None and not r.download.done:
                r.download.cancel()
                try:
                    r.download.result(timeout)
                except Exception:
                    pass
