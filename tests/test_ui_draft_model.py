"""The window's "Draft with": the library's models with the model's vocabulary are offered (others are not), the
choice is kept in the model's defaults and loaded with it, and a draft model gone from the library is said, not a
crash; on the real starter and a smaller copy of it."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from benchmarks.requantize import requantized  # noqa: E402
from window_fixtures import send  # noqa: E402

from ui.tasks import tasks_running, wait_for_tasks  # noqa: E402

STARTER = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def q4_0_copy(smollm2_path, tmp_path_factory):
    return requantized(smollm2_path, tmp_path_factory.mktemp("draft") / "smol-q4_0.gguf")


def _settle(qtbot) -> None:
    """Every background task done and its result delivered on the GUI thread."""
    assert wait_for_tasks()
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def _choices(panel) -> list:
    return [panel.draft.itemData(i) for i in range(panel.draft.count())]


def _choose(qtbot, w, name) -> None:
    panel = w.chat.chat_settings
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=180_000):
        panel.draft.setCurrentIndex(panel.draft.findData(name))
        panel.draft.activated.emit(panel.draft.currentIndex())


def test_draft_with_offers_the_compatible_models_and_loads_the_choice(qtbot, make_window, q4_0_copy, gemma_path):
    w = make_window(max_tokens=8)
    w.library.import_path(q4_0_copy, link=True, name="smol-q4_0")
    w.library.import_path(gemma_path, link=True, name="gemma-other-vocabulary")
    assert send(qtbot, w, "Hi") == "done"
    _settle(qtbot)
    panel = w.chat.chat_settings
    assert _choices(panel) == [None, "smol-q4_0"]  # not gemma (another vocabulary), not the starter itself
    assert panel.draft.isEnabled() and panel.draft.currentData() is None

    _choose(qtbot, w, "smol-q4_0")
    assert w.settings.current.model_defaults[STARTER].draft_model == "smol-q4_0"
    assert "drafts with smol-q4_0" in w.chat.notice.text()
    assert "drafts with smol-q4_0" in w.models.reason  # the load's reason says so
    drafts = w.models.worker.call(lambda e: e.draft_model is not None).result(timeout=60)
    assert drafts
    assert send(qtbot, w, "Hello again") == "done"  # and it chats (the policy decides whether drafting pays)
    _settle(qtbot)
    assert panel.draft.currentData() == "smol-q4_0"

    _choose(qtbot, w, None)  # back to none
    assert w.settings.current.model_defaults[STARTER].draft_model is None
    assert w.models.worker.call(lambda e: e.draft_model is None).result(timeout=60)


def test_a_draft_model_gone_from_the_library_is_said_and_can_be_unchosen(qtbot, make_window, q4_0_copy):
    from app.settings import ModelDefaults

    w = make_window(max_tokens=8)
    w.library.import_path(q4_0_copy, link=True, name="smol-q4_0")
    w.settings.update(model_defaults={STARTER: ModelDefaults(draft_model="smol-q4_0")})
    w.library.remove("smol-q4_0")
    with qtbot.waitSignal(w.models.sig_model_failed, timeout=120_000) as failed:
        try:
            w.load_model(STARTER)
        except Exception:
            pass  # a refusal before the load starts is told through the same signal
    assert "no longer in the library" in failed.args[1] and "Draft with" in failed.args[1]
    _settle(qtbot)
    panel = w.chat.chat_settings
    w.chat.show_draft_choices(STARTER)
    _settle(qtbot)
    assert _choices(panel) == [None, "smol-q4_0"] and "not compatible, or gone" in panel.draft.itemText(1)
    panel.draft.setCurrentIndex(0)
    panel.draft.activated.emit(0)  # nothing loaded: the choice is saved, the next load uses it
    assert w.settings.current.model_defaults[STARTER].draft_model is None
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.load_model(STARTER)
    assert q4_0_copy.exists()  # a linked import: removing it from the library left the user's file alone


def test_mtp_heads_show_for_a_model_that_has_them_and_the_choice_loads(qtbot, make_window, smollm2_path,
                                                                       tmp_path):
    from tiny_models import write_qwen35

    w = make_window(max_tokens=8)
    panel = w.chat.chat_settings
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.load_model(STARTER)
    _settle(qtbot)
    assert not panel.mtp.isVisibleTo(panel)  # the starter has no heads
    path = write_qwen35(smollm2_path, tmp_path / "qwen35-mtp.gguf", mtp=True)
    w.library.import_path(path, link=True, name="qwen35-mtp")
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.load_model("qwen35-mtp")
    _settle(qtbot)
    assert panel.mtp.isVisibleTo(panel) and panel.mtp.currentData() == "auto"
    on_cpu = "CPU" in w.models.backend  # auto: the heads draft where the model runs on a GPU
    assert ("not used on the CPU" in w.models.reason) == on_cpu
    assert w.models.worker.call(lambda e: e.draft_model is None).result(timeout=60) == on_cpu

    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        panel.mtp.setCurrentIndex(panel.mtp.findData("on"))
        panel.mtp.activated.emit(panel.mtp.currentIndex())
    assert w.settings.current.model_defaults["qwen35-mtp"].mtp == "on"
    assert "drafts with its MTP heads" in w.models.reason
    assert w.models.worker.call(lambda e: e.draft_model.source).result(timeout=60) == "mtp"
    assert send(qtbot, w, "Hello") == "done"
    _settle(qtbot)
    assert panel.mtp.currentData() == "on"

    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        panel.mtp.setCurrentIndex(panel.mtp.findData("auto"))
        panel.mtp.activated.emit(panel.mtp.currentIndex())
    assert w.settings.current.model_defaults["qwen35-mtp"].mtp is None
    assert w.models.worker.call(lambda e: e.draft_model is None).result(timeout=60) == on_cpu


def test_gemma4_offers_its_assistant_under_draft_with_and_the_assistant_alone_cannot_chat(qtbot, make_window,
                                                                                           smollm2_path, tmp_path):
    from tiny_models import write_gemma4, write_gemma4_assistant

    w = make_window(max_tokens=8)
    model = write_gemma4(smollm2_path, tmp_path / "gemma-4.gguf")
    (tmp_path / "MTP").mkdir()  # its assistant where llama.cpp users keep it: found there, and imported too
    assistant = write_gemma4_assistant(smollm2_path, tmp_path / "MTP" / "gemma-4-assistant.gguf")
    w.library.import_path(model, link=True, name="gemma-4-tiny")
    w.library.import_path(assistant, link=True, name="gemma-4-tiny-assistant")
    w.load_model("gemma-4-tiny-assistant")  # a drafter: said in words, nothing loads
    assert "is a Gemma 4 assistant" in w.statusBar().currentMessage() and w.models.worker is None
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.load_model("gemma-4-tiny")
    _settle(qtbot)
    panel = w.chat.chat_settings
    assert _choices(panel) == [None, "gemma-4-tiny-assistant"]  # the starter: another architecture, not offered
    assert panel.mtp.isVisibleTo(panel)  # no heads of its own, but its assistant beside it
    assert "not used on the CPU" in w.models.reason or "drafts with its MTP heads" in w.models.reason
    _choose(qtbot, w, "gemma-4-tiny-assistant")
    assert "drafts with its MTP heads (gemma-4-assistant.gguf)" in w.models.reason
    assert w.models.worker.call(lambda e: (e.draft_model.source, e.runtime.mtp.shared)).result(60) == ("mtp", True)
    assert send(qtbot, w, "Hello") == "done"
    _settle(qtbot)
