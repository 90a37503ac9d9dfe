"""Per-chat settings and presets: one click applies a preset to a chat, its values reach the engine's requests,
each chat keeps its own across a restart, and a model's defaults are what new chats with it start from."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from window_fixtures import close, record_requests, send  # noqa: E402


def _pick(panel, name: str) -> None:
    panel.preset.setCurrentText(name)
    panel.preset.activated.emit(panel.preset.currentIndex())


def test_a_preset_applies_to_one_chat_and_reaches_its_requests(qtbot, make_window):
    w = make_window(max_tokens=8, system_prompt="Global prompt.")
    sent = record_requests(w)
    w.chat.settings_button.click()
    panel = w.chat.chat_settings
    assert panel.isVisible() and panel.system_prompt.toPlainText() == "Global prompt."
    _pick(panel, "Coder")  # chosen before the first message: the new chat keeps it
    assert send(qtbot, w, "Hi") == "done"
    coder = w.chat.conversation_id
    request = sent[-1]
    assert request.sampling.temperature == pytest.approx(0.2)
    assert request.messages[0]["role"] == "system" and "expert programmer" in request.messages[0]["content"]
    assert w.chat.settings_button.text() == "Chat settings •"

    w.chat.new_chat()  # another chat follows the global settings
    assert panel.preset.currentText() == "Defaults" and panel.system_prompt.toPlainText() == "Global prompt."
    assert send(qtbot, w, "Hello") == "done"
    plain = w.chat.conversation_id
    assert sent[-1].sampling.temperature == 0.0 and sent[-1].messages[0]["content"] == "Global prompt."
    panel.boxes["temperature"].setValue(0.9)  # a changed value is this chat's own, at once
    assert w.chat.own.temperature == pytest.approx(0.9) and panel.preset.currentText() == "Custom"
    assert send(qtbot, w, "Again") == "done"
    assert sent[-1].sampling.temperature == pytest.approx(0.9)
    close(w)

    again = make_window()  # each chat's own settings survive a restart
    sent = record_requests(again)
    again.chat.open_conversation(coder)
    assert again.chat.chat_settings.preset.currentText() == "Coder"
    assert send(qtbot, again, "More") == "done"
    assert sent[-1].sampling.temperature == pytest.approx(0.2) and "expert" in sent[-1].messages[0]["content"]
    again.chat.open_conversation(plain)
    assert again.chat.chat_settings.preset.currentText() == "Custom"  # its own values, no preset
    again.chat.chat_settings.reset_button.click()  # back to the defaults
    assert again.chat.own is None and again.store.chat_settings(plain) is None
    assert again.chat.chat_settings.preset.currentText() == "Defaults"
    _pick(again.chat.chat_settings, "Coder")
    _pick(again.chat.chat_settings, "Defaults")  # the preset list's way back
    assert again.chat.own is None and again.store.chat_settings(plain) is None


def test_a_models_defaults_are_where_new_chats_start(qtbot, make_window):
    w = make_window(max_tokens=8)
    sent = record_requests(w)
    panel = w.chat.chat_settings
    w.chat.settings_button.click()
    panel.boxes["top_k"].setValue(7)
    panel.save_button.click()
    assert "New chats with smollm2-135m-instruct start from these settings." == w.chat.notice.text()
    assert w.settings.current.model_defaults["smollm2-135m-instruct"].top_k == 7
    w.chat.new_chat()
    assert w.chat.own is None and panel.boxes["top_k"].value() == 7
    assert send(qtbot, w, "Hi") == "done"
    assert sent[-1].sampling.top_k == 7  # from the model's defaults, the chat having none of its own


def test_a_models_own_context_size_is_what_it_loads_with(qtbot, make_window):
    from app.settings import ModelDefaults

    w = make_window(n_ctx=2048)
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.load_model("smollm2-135m-instruct")
    assert w.models.worker.call(lambda e: e.runtime.n_ctx).result(timeout=60) == 2048
    w.settings.update(model_defaults={"smollm2-135m-instruct": ModelDefaults(n_ctx=1024)})
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        w.models.reload()
    assert w.models.worker.call(lambda e: e.runtime.n_ctx).result(timeout=60) == 1024
    w.chat.settings_button.click()
    w.chat.chat_settings.boxes["top_k"].setValue(9)
    w.chat.chat_settings.save_button.click()  # saving sampling keeps the model's context size
    saved = w.settings.current.model_defaults["smollm2-135m-instruct"]
    assert saved.n_ctx == 1024 and saved.top_k == 9


TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\nMY TEMPLATE {{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_models_own_chat_template_is_checked_saved_and_loaded_with(qtbot, make_window):
    from PySide6.QtCore import QTimer

    w = make_window(max_tokens=8)
    assert send(qtbot, w, "Hi") == "done"
    own = w.models.worker.call(lambda e: e.runtime.chat_template).result(timeout=60)
    seen = []

    def edit(text: str, then_cancel: bool = False) -> None:
        dialog = w.chat.template_dialog
        seen.append(dialog.editor.toPlainText())
        dialog.editor.setPlainText(text)
        dialog.save_button.click()
        seen.append(dialog.problem.text() if dialog.problem.isVisibleTo(dialog) else "")
        if then_cancel:
            dialog.reject()

    QTimer.singleShot(0, lambda: edit("{% for m in messages %}{{ m.content ", then_cancel=True))
    w.chat.edit_template()  # a broken template: said in the dialog, nothing saved
    assert seen[0] == own and "does not compile" in seen[1]
    assert "smollm2-135m-instruct" not in w.settings.current.model_defaults
    QTimer.singleShot(0, lambda: edit("{{ 'no messages in me' }}", then_cancel=True))
    w.chat.edit_template()
    assert "leaves out the user's message" in seen[3]

    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        QTimer.singleShot(0, lambda: edit(TEMPLATE))
        w.chat.edit_template()  # saved, and the model is loaded again with it
    assert w.settings.current.model_defaults["smollm2-135m-instruct"].chat_template == TEMPLATE
    assert "now uses your chat template" in w.chat.notice.text()
    prompt = w.models.worker.call(lambda e: e.template.render_raw([{"role": "user", "content": "Hi"}])).result(60)
    assert prompt == "<|im_start|>user\nMY TEMPLATE Hi<|im_end|>\n<|im_start|>assistant\n"
    assert send(qtbot, w, "Hello") == "done"

    def use_own() -> None:
        seen.append(w.chat.template_dialog.editor.toPlainText())
        w.chat.template_dialog.own_button.click()

    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        QTimer.singleShot(0, use_own)
        w.chat.edit_template()
    assert seen[-1] == TEMPLATE and w.settings.current.model_defaults["smollm2-135m-instruct"].chat_template is None
    assert w.models.worker.call(lambda e: e.template.source).result(60) == own


def test_the_context_meter_counts_what_the_engine_will_read_and_says_what_happens_at_the_limit(qtbot, make_window):
    w = make_window(n_ctx=512, max_tokens=8)
    meter = w.chat.meter
    assert send(qtbot, w, "Hi") == "done"
    qtbot.waitUntil(lambda: meter.counted is not None and meter.isVisible(), timeout=60_000)
    after_reply = meter.counted
    w.chat.input.setPlainText("What is the capital of France?")
    qtbot.waitUntil(lambda: meter.counted != after_reply, timeout=60_000)
    typed, n_ctx = meter.counted
    assert n_ctx == 512 and typed > after_reply[0] and meter.text() == f"{typed:,} of 512 tokens"
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send_button.click()
    assert w.store.messages(w.chat.conversation_id)[-1].stats["prompt_tokens"] == typed  # the engine's own count

    w.chat.input.setPlainText("lighthouse " * 600)
    qtbot.waitUntil(lambda: "over the limit" in meter.text(), timeout=60_000)
    assert meter.text().endswith("over the limit: the oldest turns will be left out")
    w.chat.settings_button.click()
    panel = w.chat.chat_settings
    panel.overflow.setCurrentIndex(panel.overflow.findData("refuse"))  # this chat refuses instead
    qtbot.waitUntil(lambda: meter.text().endswith("over the limit: the message will be refused"), timeout=60_000)
    assert w.chat.own.overflow == "refuse"
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000) as done:
        w.chat.send_button.click()
    assert done.args == ["error"] and "context" in w.chat.views()[-1].note.text()


def test_a_new_chat_starts_from_a_summary_of_this_one(qtbot, make_window):
    w = make_window(max_tokens=16, system_prompt="Be kind.")
    assert send(qtbot, w, "My name is Ada and I keep a lighthouse.") == "done"
    old = w.chat.conversation_id
    old_messages = [m.content for m in w.store.messages(old)]
    w.chat.summary_button.click()
    assert w.chat.notice.text() == "Summarizing this chat…"
    qtbot.waitUntil(lambda: w.chat.conversation_id != old, timeout=180_000)
    new = w.chat.conversation_id
    prompt = w.chat.own.system_prompt
    assert prompt.startswith("Be kind.\n\nWhat we discussed in an earlier chat, summarized:\n") and \
        len(prompt) > len("Be kind.\n\nWhat we discussed in an earlier chat, summarized:\n") + 3
    assert w.chat.views() == [] and w.store.conversations()[0].title.startswith("From: My name is Ada")
    assert "starts from a summary" in w.chat.notice.text()
    assert [m.content for m in w.store.messages(old)] == old_messages  # the old chat is untouched
    sent = record_requests(w)
    assert send(qtbot, w, "What is my name?") == "done"
    assert sent[-1].messages[0] == {"role": "system", "content": prompt}  # the summary reaches the model
    assert w.store.chat_settings(new)["system_prompt"] == prompt
