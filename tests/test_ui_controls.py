"""The controls users of other chat apps reach for, end to end: a chat's seed, stop strings and thinking switch
reach the engine's request (and change the reply or the prompt), threads and batch size reach llama.cpp, and the GPU
layers slider says what the layers take as it moves."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from machine.hardware import GPU, Hardware  # noqa: E402
from window_fixtures import record_requests, send, stored  # noqa: E402

from app.settings import ModelDefaults  # noqa: E402
from models.registry import STARTER_MODEL  # noqa: E402

# SmolLM2's own ChatML, plus what Qwen3's template does with enable_thinking (an empty reasoning block when off)
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def test_seed_and_stop_strings_reach_the_reply(qtbot, make_window):
    w = make_window(max_tokens=24)
    sent = record_requests(w)
    assert send(qtbot, w, "Tell me about the sea.") == "done"
    first = stored(w)[-1][1]
    assert " " in first.strip() and sent[-1].stop == () and sent[-1].sampling.seed is None
    w.chat.settings_button.click()
    panel = w.chat.chat_settings
    panel.boxes["seed"].setValue(42)
    panel.stop.setPlainText(" \nnever\\nthis")  # a space: the reply ends before its first one
    panel.flush()
    assert w.chat.own.seed == 42 and w.chat.own.stop == [" ", "never\nthis"]
    assert send(qtbot, w, "Tell me about the sea.") == "done"  # in the same chat: its own settings
    assert sent[-1].sampling.seed == 42 and sent[-1].stop == (" ", "never\nthis")
    reply = stored(w)[-1][1]
    assert reply and " " not in reply.strip() and len(reply) < len(first)  # one word, ended at the stop string


def test_thinking_switch_shows_for_a_model_that_reads_it_and_changes_its_prompt(qtbot, make_window):
    from chat_format.chat_template import parse_messages

    w = make_window(max_tokens=4, model_defaults={STARTER_MODEL: ModelDefaults(chat_template=THINKING_TEMPLATE)})
    sent = record_requests(w)
    panel = w.chat.chat_settings
    assert not panel.form.isRowVisible(panel.thinking)  # nothing loaded yet: nothing to switch
    assert send(qtbot, w, "Hi") == "done"
    assert w.models.thinking_controls == (True, False)
    assert panel.form.isRowVisible(panel.thinking) and not panel.form.isRowVisible(panel.effort)
    assert sent[-1].template_options["enable_thinking"] is True
    w.chat.settings_button.click()
    panel.thinking.setChecked(False)  # saved at once as this chat's own
    assert w.chat.own.thinking is False
    assert send(qtbot, w, "Again") == "done"
    request = sent[-1]
    assert request.template_options["enable_thinking"] is False

    def prompt(e):
        return e.template.render(parse_messages(request.messages), options=request.template_options)

    rendered = w.models.worker.call(prompt).result(timeout=30)
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_a_model_without_thinking_hides_the_switch(qtbot, make_window):
    w = make_window(max_tokens=2)
    assert send(qtbot, w, "Hi") == "done"
    panel = w.chat.chat_settings
    assert w.models.thinking_controls == (False, False)
    assert not panel.form.isRowVisible(panel.thinking) and not panel.form.isRowVisible(panel.effort)


def test_threads_and_batch_size_reach_llama_cpp(qtbot, make_window):
    w = make_window(max_tokens=2)
    assert send(qtbot, w, "Hi") == "done"
    page = w.settings_page
    page.widgets["threads"].setValue(1)
    page.widgets["batch_size"].setValue(64)
    assert page.save() and page.reload_button.isVisibleTo(page)
    assert w.settings.current.threads == 1 and w.settings.current.batch_size == 64
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        page.reload_button.click()
    runtime = w.models.worker.call(lambda e: (e.runtime.n_threads, e.runtime.n_batch)).result(timeout=30)
    assert runtime == (1, 64)
    page.widgets["batch_size"].setValue(0)  # below the box's range: it stays at 1
    page.widgets["threads"].setValue(0)  # "automatic"
    assert page.save() and w.settings.current.threads is None


def test_gpu_layers_slider_says_what_the_layers_take(qtbot, make_window, smollm2_path):
    from models.info import describe_model

    w = make_window()
    page = w.settings_page
    hw = Hardware(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=32 << 30, ram_available_bytes=24 << 30,
                  gpus=(GPU("RTX 4070", 12 << 30, 11 << 30),), llamacpp_version="0.3.36",
                  llamacpp_gpu_offload=True, llamacpp_gpu_backend="CUDA")
    page.set_hardware(hw)
    assert page.shown("n_gpu_layers")
    page.set_model(describe_model(smollm2_path))
    field = page.widgets["n_gpu_layers"]
    assert field.value() == -2 and "as many" in field.fit.text()
    field.auto.setChecked(False)
    field.slider.setValue(10)
    assert field.fit.text().startswith("10 of 30 layers on the GPU") and "RTX 4070" in field.fit.text()
    assert "in RAM" in field.fit.text() and field.count.text() == "10 / 30"
    assert page.save() and w.settings.current.n_gpu_layers == 10
    field.slider.setValue(30)
    assert "nothing in RAM" in field.fit.text() and page.save() and w.settings.current.n_gpu_layers == -1
    small = Hardware(**{**hw.__dict__, "gpus": (GPU("Tiny", 1 << 30, 700 << 20),)})
    page.set_hardware(small)
    assert "more than fits" in field.fit.text()
    field.auto.setChecked(True)
    assert page.save() and w.settings.current.n_gpu_layers is None


def test_bad_stop_strings_are_refused_in_words(qtbot, make_window):
    w = make_window()
    page = w.settings_page
    page.widgets["stop"].setPlainText("\n".join(f"s{i}" for i in range(9)))
    assert not page.save() and "Not saved" in page.message.text() and w.settings.current.stop == []
    page.widgets["stop"].setPlainText("###\n\\n\\n")
    assert page.save() and w.settings.current.stop == ["###", "\n\n"]


def test_settings_fields_line_up_and_reload_stays_in_sight(qtbot, make_window):
    from PySide6.QtCore import QPoint

    w = make_window()
    w.pages.setCurrentWidget(w.settings_page)
    page = w.settings_page
    w.resize(900, 500)  # a small window: the form scrolls
    page.widgets["n_ctx"].setValue(1024)  # a change that needs a reload
    assert page.save()
    qtbot.waitUntil(lambda: page.reload_button.isVisible())
    lefts = {page.widgets[k].mapTo(page, QPoint(0, 0)).x() for k in page.widgets
             if page.shown(k) and k not in ("prompt_lookup", "thinking")}
    assert len(lefts) == 1, lefts  # every field starts at one column
    spot = page.reload_button.mapTo(page, QPoint(0, 0))
    assert 0 <= spot.y() and spot.y() + page.reload_button.height() <= page.height()  # above the fold


def test_a_chat_refuses_a_bad_stop_string_in_words_and_keeps_its_settings(qtbot, make_window):
    w = make_window()
    w.chat.settings_button.click()
    panel = w.chat.chat_settings
    panel.stop.setPlainText("###")
    panel.flush()
    assert w.chat.own.stop == ["###"]
    panel.stop.setPlainText("x" * 201)
    panel.flush()  # refused, said under the form; the chat keeps what it had
    assert panel.problem.isVisible() and "Stop strings" in panel.problem.text() and "200" in panel.problem.text()
    assert w.chat.own.stop == ["###"]
    panel.stop.setPlainText("##")
    panel.flush()
    assert not panel.problem.isVisible() and w.chat.own.stop == ["##"]


def test_pinned_chats_stay_on_top_under_dated_headings(qtbot, make_window):
    import time

    from ui.conversation_list import date_group

    w = make_window()
    store, sidebar = w.store, w.chat.sidebar
    old = store.create("Old chat").id
    store._db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time() - 40 * 86400, old))
    new = store.create("New chat").id
    sidebar.refresh()
    texts = [sidebar.list.item(r).text() for r in range(sidebar.list.count())]
    assert texts == ["TODAY", "New chat", "OLDER", "Old chat"] and sidebar.ids() == [new, old]
    item = sidebar.chat_item(1)
    sidebar.menu_for(item).actions()[0].trigger()  # "Pin to the top"
    texts = [sidebar.list.item(r).text() for r in range(sidebar.list.count())]
    assert texts == ["PINNED", "Old chat", "TODAY", "New chat"] and sidebar.ids() == [old, new]
    assert not sidebar.chat_item(0).icon().isNull()  # a pin
    sidebar.list.setCurrentRow(0)  # a heading: nothing opens
    assert w.chat.conversation_id is None
    w.close()
    w.store.close()
    again = make_window()  # kept across a restart
    assert again.chat.sidebar.ids() == [old, new]
    assert again.chat.sidebar.menu_for(again.chat.sidebar.chat_item(0)).actions()[0].text() == "Unpin"
    now = time.mktime((2026, 12, 5, 12, 0, 0, 0, 0, -1))
    assert [date_group(now - d * 86400, now) for d in (0, 1, 3, 10, 60)] == \
        ["Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older"]


def test_the_model_picker_opens_a_searchable_list_with_fit_and_speed(qtbot, make_window):
    from PySide6.QtCore import Qt

    w = make_window()
    qtbot.waitUntil(lambda: w.models_page.hardware is not None, timeout=30_000)
    qtbot.waitUntil(lambda: "smollm2-135m-instruct" in w.picker.fits, timeout=30_000)
    assert "tokens/s" in w.picker.fits["smollm2-135m-instruct"] or "too big" in w.picker.fits["smollm2-135m-instruct"]
    w.picker.showPopup()
    menu = w.picker.menu
    assert menu.isVisible() and menu.search.hasFocus()
    assert menu.names() == [w.picker.itemText(i) for i in range(w.picker.count())]
    assert "gemma3-270m" in menu.names()
    qtbot.keyClicks(menu.search, "gemma")
    assert menu.names() == ["gemma3-270m"]
    qtbot.keyClicks(menu.search, " nothing-like-this")
    assert menu.names() == [] and menu.empty.isVisible()
    menu.search.setText("smol q4_1")  # the details are searched too
    assert menu.names() == ["smollm2-135m-instruct"]
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=120_000):
        qtbot.keyClick(menu.search, Qt.Key.Key_Return)  # picks the first match: it loads
    assert not menu.isVisible() and w.models.name == "smollm2-135m-instruct"
