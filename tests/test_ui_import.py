"""Importing a model from the window: a real file dialog's answer, the real import dialog (its modal loop replaced by
the test's choices), the real library."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QPushButton  # noqa: E402

from ui.import_dialog import ImportDialog  # noqa: E402


def test_the_import_dialog_suggests_a_name_and_refuses_a_taken_or_unsafe_one(qtbot, make_window, smollm2_path,
                                                                             tmp_path):
    w = make_window()
    mine = tmp_path / "My Model.Q4_1.gguf"
    shutil.copy(smollm2_path, mine)
    dialog = ImportDialog(mine, w.library, w)
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert dialog.name.text() == "my-model.q4_1" and ok.isEnabled() and dialog.copy.isChecked()
    assert "98 MB" in dialog.copy.text() and "free" in dialog.copy.text()
    # the built-in starter's very bytes: a warning (a second name may be wanted), not a refusal
    assert "already in Lantern as “smollm2-135m-instruct”" in dialog.duplicate.text() and ok.isEnabled()
    fresh = tmp_path / "fresh.gguf"
    fresh.write_bytes(b"GGUF" + bytes(64))
    other = ImportDialog(fresh, w.library, w)
    qtbot.addWidget(other)
    assert other.duplicate.isHidden()
    for bad in ("smollm2-135m-instruct", "SMOLLM2-135M-Instruct", "../outside", "", "a/b"):
        dialog.name.setText(bad)
        assert not ok.isEnabled() and dialog.problem.text(), bad  # said at once, and Import refuses
    dialog.name.setText("mine")
    assert ok.isEnabled() and dialog.problem.isHidden()
    dialog.link.setChecked(True)
    assert dialog.choice() == ("mine", True)


@pytest.mark.parametrize("how", ["copy", "link"])
def test_importing_from_the_models_page_copies_or_links_under_the_chosen_name(qtbot, make_window, smollm2_path,
                                                                              tmp_path, monkeypatch, how):
    w = make_window()
    mine = tmp_path / "downloaded.gguf"
    shutil.copy(smollm2_path, mine)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(mine), "GGUF models (*.gguf)"))
    asked = []

    def answer(dialog):  # what the user does in the dialog, instead of its modal loop
        asked.append(dialog.name.text())
        dialog.name.setText(f"my-{how}")
        (dialog.link if how == "link" else dialog.copy).setChecked(True)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ImportDialog, "exec", answer)
    button = next(b for b in w.models_page.findChildren(QPushButton) if b.accessibleName() == "Import a GGUF file")
    button.click()
    qtbot.waitUntil(lambda: f"my-{how}" in w.library.names(), timeout=60_000)
    model = w.library.get(f"my-{how}")
    assert asked == ["downloaded"] and model.linked == (how == "link")
    assert (model.path == str(mine)) == (how == "link")  # a copy lives in Lantern's folder
    qtbot.waitUntil(lambda: w.picker.findText(f"my-{how}") >= 0, timeout=10_000)


def test_an_embedding_model_is_not_loaded_for_chat(qtbot, make_window):
    from embedding_model import minilm_gguf

    w = make_window()
    w.models_page.import_file(str(minilm_gguf()), link=True, name="minilm")
    qtbot.waitUntil(lambda: "minilm" in w.library.names(), timeout=60_000)
    w.load_model("minilm")
    assert "embedding model" in w.statusBar().currentMessage() and w.models.name is None  # nothing loads
    assert w.picker.currentText() != "minilm"
