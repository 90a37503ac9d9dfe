"""The catalog as cards with a details drawer: what a model is in words, its license, context, thinking, sight and
tool format, the repository's quantizations (read from a local server that speaks the Hub's protocol) with their
sizes and fit here, and Download of the chosen one."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytestqt")

from hub_server import HubFile, HubRepo, HubServer, HubState  # noqa: E402
from window_fixtures import close  # noqa: E402

REPO = "LiquidAI/LFM2.5-1.2B-Instruct-GGUF"
FILE = "LFM2.5-1.2B-Instruct-Q4_K_M.gguf"


def test_a_card_opens_its_details_and_downloads_the_chosen_quantization(qtbot, make_window, smollm2_path, tmp_path):
    from tiny_models import write_lfm2

    tiny = write_lfm2(smollm2_path, tmp_path / "lfm2.gguf")
    bigger = tmp_path / "q8.gguf"
    shutil.copy(tiny, bigger)
    with open(bigger, "ab") as f:
        f.write(b"\0" * 1_000_000)  # another quantization, a little bigger
    state = HubState()
    state.add(HubRepo(REPO, {FILE: HubFile(tiny), "LFM2.5-1.2B-Instruct-Q8_0.gguf": HubFile(bigger)}))
    with HubServer(state) as hub:
        w = make_window(hub=hub)
        page, view = w.models_page, w.models_page.catalog_view
        w.pages.setCurrentWidget(page)
        qtbot.waitUntil(lambda: len(page.fits) == len(page.catalog), timeout=30_000)
        cells = view.cells("lfm2.5-1.2b-instruct")
        assert cells["title"] == "LFM2.5 1.2B Instruct" and "1.2B" in cells["shape"] and "K context" in cells["shape"]
        assert cells["fit"] and cells["verdict"] in ("gpu", "partial", "cpu", "no")
        if cells["verdict"] == "cpu":
            assert "GiB" in cells["fit"]  # what it takes of the RAM, on the card
        drawer = view.drawer
        assert drawer.isHidden()
        view.list.setCurrentItem(view.row_of("lfm2.5-1.2b-instruct"))
        assert drawer.isVisible() and drawer.title.text() == "LFM2.5 1.2B Instruct"
        assert "Liquid AI" in drawer.by.text() and "1.2B-parameter chat model" in drawer.about.text()
        assert drawer.facts["License"].text().startswith("LFM Open License")
        assert drawer.facts["Sees images"].text() == "no" and "K tokens" in drawer.facts["Context"].text()
        assert drawer.facts["Tool calls"].text() and drawer.facts["Fit here"].text() != "checking this machine…"
        assert drawer.facts["Draft model"].text() == "none in the catalog"  # the family's smallest
        view.list.setCurrentItem(view.row_of("gemma-4-31b"))
        assert drawer.facts["Draft model"].text().startswith("gemma-4-e2b (5.1B, same family)")
        view.list.setCurrentItem(view.row_of("lfm2.5-1.2b-instruct"))
        qtbot.waitUntil(lambda: drawer.table.rowCount() == 2, timeout=30_000)
        labels = [drawer.table.item(r, 0).text() for r in range(2)]
        assert sorted(labels) == ["Q4_K_M", "Q8_0"] and all(drawer.table.item(r, 2).text() for r in range(2))
        assert drawer.chosen().files == (FILE,)  # the catalog's own file is chosen first
        q8 = labels.index("Q8_0")
        drawer.table.selectRow(q8)
        chosen = drawer.chosen()
        assert chosen.files == ("LFM2.5-1.2B-Instruct-Q8_0.gguf",) and chosen.name == "lfm2.5-1.2b-instruct-q8-0"
        assert drawer.download.text() == "Download Q8_0"
        with qtbot.waitSignal(view.sig_download, timeout=5000) as asked:
            drawer.download.click()
        assert asked.args[0].files == chosen.files
        qtbot.waitUntil(lambda: "lfm2.5-1.2b-instruct-q8-0" in page.local_names(), timeout=60_000)
        # a repository the Hub does not have: said in the drawer, with no doubled stop
        view.list.setCurrentItem(view.row_of("qwen3.5-4b"))
        qtbot.waitUntil(lambda: "could not be read" in drawer.quant_note.text(), timeout=30_000)
        qtbot.waitUntil(lambda: "stay estimates" in page.status.text(), timeout=30_000)
        assert ".)." not in page.status.text() and ".." not in drawer.quant_note.text()
        drawer.close_drawer()
        assert drawer.isHidden() and view.list.currentItem() is None
        close(w)


def test_a_failed_download_stands_out_and_old_errors_do_not_linger(qtbot, make_window, hub):
    w = make_window(hub=hub)
    page = w.models_page
    w.pages.setCurrentWidget(page)
    row = page.downloads.start("someone/not-on-this-hub:model.gguf", title="Missing model")
    qtbot.waitUntil(lambda: row.state == "failed", timeout=60_000)
    assert row.detail.objectName() == "download-failed" and row.detail.text().startswith("Failed:")
    assert row.resume_button.text() == "Retry"
    page.show_status("The Hub could not be read (no network).", error=True)
    assert page.status.objectName() == "status-error"
    page.tabs.setCurrentIndex((page.tabs.currentIndex() + 1) % page.tabs.count())  # the user moves on: it goes
    assert page.status.text() == "" and page.status.objectName() == "status"
    page.show_status("Imported mine.")
    assert page._status_fade.isActive()  # news fades by itself
    page._status_fade.timeout.emit()
    assert page.status.text() == ""
