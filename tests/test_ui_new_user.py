"""The bugs a new user hit (issue 33), each on the real window and the starter model."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from chat_format.chat_template import parse_messages  # noqa: E402
from window_fixtures import REPLY_TIMEOUT, send, stored  # noqa: E402


def test_the_remote_backend_without_an_address_is_refused_and_explained(qtbot, make_window):
    w = make_window(max_tokens=8)
    page = w.settings_page
    page.widgets["backend"].setCurrentText("remote")
    page.widgets["remote_url"].setText("")
    assert page.save() is False and "server's address" in page.message.text()
    assert w.settings.current.backend == "auto"  # nothing was saved
    # a settings file written by hand (or by an older Lantern) with no address: the message is kept, with why and Retry
    w.settings.update(backend="remote", remote_url=None)
    assert send(qtbot, w, "Hello?") == "error"
    user = w.chat.views()[-1]
    assert user.role == "user" and user.text == "Hello?"
    assert not user.retry_button.isHidden() and "Remote server" in user.note.text()
    assert w.models.state == "failed" and "Remote server" in w.models.error
    w.settings.update(backend="auto")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT) as done:
        user.retry_button.click()
    assert done.args == ["done"] and [r for r, _, _ in stored(w)] == ["user", "assistant"]
    assert w.chat.views()[0].retry_button.isHidden() and not w.chat.views()[0].note.text()


def test_a_message_left_without_a_reply_has_retry(qtbot, make_window):
    w = make_window(max_tokens=8)
    chat = w.store.create("Left behind")  # as a crash between the message and its reply leaves it
    w.store.add(chat.id, "user", "Name a colour.")
    w.chat.sidebar.refresh()
    w.chat.open_conversation(chat.id)
    user = w.chat.views()[-1]
    assert not user.retry_button.isHidden() and user.note.text() == "This message has no reply."
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT) as done:
        user.retry_button.click()
    assert done.args == ["done"] and [r for r, _, _ in stored(w)] == ["user", "assistant"]
    # a reply deleted ("Delete from here…") leaves its question with Retry too
    from ui import dialogs

    original, dialogs.confirm = dialogs.confirm, lambda *a: True
    try:
        w.chat.views()[-1].sig_delete_requested.emit(w.chat.views()[-1].message_id)
    finally:
        dialogs.confirm = original
    assert [v.role for v in w.chat.views()] == ["user"] and not w.chat.views()[0].retry_button.isHidden()


def test_typing_a_system_prompt_then_a_new_chat_keeps_it_with_its_chat(qtbot, make_window):
    w = make_window(max_tokens=4)
    assert send(qtbot, w, "Hi.") == "done"
    first = w.chat.conversation_id
    w.chat.settings_button.setChecked(True)
    w.chat.chat_settings.system_prompt.setPlainText("Answer in French.")  # saved when the typing pauses…
    w.chat.new_chat()  # …but the user went on at once
    qtbot.wait(600)
    assert w.store.chat_settings(first)["system_prompt"] == "Answer in French."
    assert w.chat.own is None and w.chat.effective_settings().system_prompt != "Answer in French."


def test_an_empty_title_is_put_back_without_touching_a_deleted_item(qtbot, make_window):
    w = make_window(max_tokens=4)
    assert send(qtbot, w, "Hi.") == "done"
    item = w.chat.sidebar.list.currentItem()
    item.setText("")  # what the list's editor does when the user clears the title and presses Enter
    qtbot.waitUntil(lambda: w.chat.sidebar.list.currentItem() is not None
                    and w.chat.sidebar.list.currentItem().text() == "Hi.", timeout=5000)
    assert w.store.conversations()[0].title == "Hi."


def test_a_reply_cut_at_the_length_limit_says_so_and_keeps_saying_it(qtbot, make_window):
    w = make_window(max_tokens=4)
    w.chat.request_options = {"ignore_eos": True}  # the limit, whatever the model would say
    assert send(qtbot, w, "Tell me a long story.") == "done"
    assert w.chat.views()[-1].note.text().startswith("Cut at the length limit (4 tokens")
    w.chat.request_options = {}
    w.settings.update(max_tokens=200)
    assert send(qtbot, w, "Hi.") == "done"
    ended = w.store.messages(w.chat.conversation_id)[-1].stats["finish"]
    assert (ended == "length") == bool(w.chat.views()[-1].note.text())  # only a cut reply says so
    chat = w.chat.conversation_id
    w.chat.new_chat()
    w.chat.open_conversation(chat)  # drawn again from the store
    assert w.chat.views()[1].note.text().startswith("Cut at the length limit (4 tokens")


def test_switching_versions_stays_at_the_message(qtbot, make_window):
    w = make_window(max_tokens=60)
    w.chat.request_options = {"ignore_eos": True}  # replies long enough to scroll
    w.resize(900, 500)
    for question in ("Tell me about lighthouses.", "And about boats?", "And about harbours?"):
        assert send(qtbot, w, question) == "done"
    w.chat.views()[0].edit_button.click()
    w.chat.input.setPlainText("Tell me about rivers.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT):
        w.chat.send_button.click()
    assert send(qtbot, w, "And about lakes?") == "done"
    bar = w.chat.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())  # at the end after sending
    bar.setValue(0)  # the user scrolls up to the first message and goes back to its first version
    w.chat.views()[0].previous_variant.click()
    qtbot.wait(200)  # laid out
    assert w.chat.views()[0].variant_label.text() == "1/2" and len(w.chat.views()) == 6
    assert bar.maximum() > 0 and bar.value() == 0  # still at the message, not at the chat's end


def test_an_empty_chat_offers_no_summary_and_no_jump(qtbot, make_window):
    w = make_window(max_tokens=4, first_start=True)
    w.resize(700, 420)  # the welcome is taller than the messages' area
    qtbot.wait(50)
    assert w.chat.summary_button.isHidden() and w.chat.latest_button.isHidden()
    assert send(qtbot, w, "Hi.") == "done"
    assert not w.chat.summary_button.isHidden()
    w.chat.new_chat()
    assert w.chat.summary_button.isHidden() and w.chat.latest_button.isHidden()


def test_a_model_switched_by_another_app_is_said_and_chat_from_models_opens_a_new_chat(qtbot, make_window):
    w = make_window(max_tokens=4)
    assert send(qtbot, w, "Hi.") == "done"
    chat = w.chat.conversation_id
    assert "another app" not in w.chat.notice.text()
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=REPLY_TIMEOUT):
        w.host.use("gemma3-270m")  # what the endpoint does for a request naming another model
    assert "another app" in w.chat.notice.text() and "gemma3-270m" in w.chat.notice.text()
    assert w.chat.conversation_id == chat  # the chat stays; the notice says who writes its next reply
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=REPLY_TIMEOUT):
        w.models_page.sig_use_model.emit("smollm2-135m-instruct")  # the Models page's Chat
    assert w.chat.conversation_id is None and w.pages.currentWidget() is w.chat and not w.chat.views()
    assert "another app" not in w.chat.notice.text()


def test_the_kv_cache_type_from_settings_reaches_llama_cpp(qtbot, make_window):
    import re

    w = make_window(max_tokens=4)
    assert send(qtbot, w, "Hi.") == "done"
    f16 = int(re.search(r"KV cache ([0-9,]+) MiB", w.models.reason)[1].replace(",", ""))
    page = w.settings_page
    page.widgets["kv_cache_type"].setCurrentText("q4_0")
    page.widgets["flash_attn"].setCurrentText("off")
    assert page.save() is False and "needs flash attention" in page.message.text()
    page.widgets["flash_attn"].setCurrentText("auto")
    assert page.save() and not page.reload_button.isHidden()  # a load setting: the model is loaded again to use it
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=REPLY_TIMEOUT):
        page.reload_button.click()
    q4 = int(re.search(r"KV cache ([0-9,]+) MiB", w.models.reason)[1].replace(",", ""))
    assert q4 < 0.35 * f16, (f16, q4)
    assert send(qtbot, w, "And again?") == "done"


def test_continue_writes_on_a_reply_cut_at_the_length_limit(qtbot, make_window):
    from window_fixtures import record_requests

    w = make_window(max_tokens=6)
    sent = record_requests(w)
    assert send(qtbot, w, "Write a long story about a lighthouse keeper.") == "done"
    view = w.chat.views()[-1]
    first = w.store.messages(w.chat.conversation_id)[-1]
    assert first.stats["finish"] == "length" and view.continue_button.isVisible()
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT):
        view.continue_button.click()
    request = sent[-1]
    assert request.continue_reply and request.messages[-1] == {"role": "assistant", "content": first.content}
    messages = w.store.messages(w.chat.conversation_id)
    assert len(messages) == 2 and len(w.chat.views()) == 2  # the same reply grew; no new message
    grown = messages[-1]
    assert grown.id == first.id and grown.content.startswith(first.content) and len(grown.content) > len(first.content)
    assert w.chat.views()[-1].body.toPlainText().startswith(first.content.strip()[:10])
    # the prompt ended at the reply's last word: the model went on, with no new turn in between
    prompt = w.models.worker.call(lambda e: e.template.render_parts(
        parse_messages(request.messages), add_generation_prompt=False)).result(timeout=30)
    assert prompt[-1][0].endswith("<|im_end|>\n") and first.content in "".join(p for p, _ in prompt)
    from engine.prompt import continued_parts

    assert "".join(p for p, _ in continued_parts(parse_messages(request.messages), prompt)).endswith(first.content)
    # only the last reply offers it; a refused continuation leaves the reply as it was, and says why
    w.chat.request_options = {"ignore_eos": True}  # cut again, whatever the model would say
    assert send(qtbot, w, "Thanks.") == "done"
    assert not w.chat.views()[1].continue_button.isVisible() and w.chat.views()[3].continue_button.isVisible()
    before = w.store.messages(w.chat.conversation_id)[-1]
    assert before.stats["finish"] == "length"
    w.chat.request_options = {"logprobs": 99}  # a request the engine refuses before it writes a word
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT):
        w.chat.views()[3].continue_button.click()
    after = w.store.messages(w.chat.conversation_id)[-1]
    assert (after.content, after.status, after.stats) == (before.content, before.status, before.stats)
    assert w.chat.notice.text().startswith("Not continued:") and "logprobs" in w.chat.notice.text()
    assert w.chat.views()[3].continue_button.isVisible() and w.chat.views()[3].note.text().startswith("Cut at")


def test_only_a_reply_can_be_continued():
    from chat_format.chat_template import Message
    from engine.prompt import continued_parts
    from basics.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="Only a reply"):
        continued_parts([Message("user", "hi")], [("hi", True)])
    parts = [("<s>", False), ("hi", True), ("</s><a>", False), (" so", True), ("</a>", False)]
    assert continued_parts([Message("user", "hi"), Message("assistant", " so")], parts) == parts[:4]
    trimmed = [("<s>hi</s><a>so</a>", False)]  # a template that trims: found as written
    assert continued_parts([Message("user", "hi"), Message("assistant", "so")], trimmed) == \
        [("<s>hi</s><a>", False), ("so", True)]
    with pytest.raises(InvalidRequestError, match="rewrites replies"):
        continued_parts([Message("user", "hi"), Message("assistant", "SO")], trimmed)


def test_a_reply_stopped_while_it_waits_for_the_model_ends_and_is_not_left_writing(qtbot, make_window):
    """Found by the soak: a reply cancelled in the engine's queue got no end event, and stayed "streaming"."""
    import threading

    w = make_window(max_tokens=8, slots=1)  # one conversation at a time: the engine's own queue (engine/worker.py)
    assert send(qtbot, w, "Hi.") == "done"
    gate = threading.Event()
    w.models.worker.call(lambda _e: gate.wait(60))  # the engine is busy: the next reply waits in its queue
    w.chat.input.setPlainText("Tell me more.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT) as done:
        w.chat.send_button.click()
        w.chat.stop()  # before the model began it
        gate.set()
    assert done.args[0] == "stopped" and not w.chat.busy
    assert [m.status for m in w.store.messages(w.chat.conversation_id)][-1] == "stopped"
    # a continuation stopped the same way is put back as it was
    w.chat.request_options = {"ignore_eos": True}
    assert send(qtbot, w, "Go on.") == "done"
    w.chat.request_options = {}
    before = w.store.messages(w.chat.conversation_id)[-1]
    assert before.stats["finish"] == "length"
    gate.clear()
    w.models.worker.call(lambda _e: gate.wait(60))
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT):
        w.chat.continue_reply(before.id)
        w.chat.stop()
        gate.set()
    after = w.store.messages(w.chat.conversation_id)[-1]
    assert (after.content, after.status, after.stats) == (before.content, before.status, before.stats)
    assert w.chat.notice.text() == "Not continued: stopped before it began"


def test_the_welcome_keeps_its_height_in_a_small_window(qtbot, make_window):
    w = make_window(first_start=True)
    qtbot.waitUntil(lambda: w.welcome.suggested != [] or "No catalog model" in w.welcome.checking.text(),
                    timeout=30_000)
    w.resize(900, 560)
    qtbot.wait(100)  # laid out
    assert w.welcome.isVisible() and w.welcome.height() >= w.welcome.sizeHint().height()
    assert w.welcome.starter_button.geometry().bottom() < w.welcome.height()  # nothing cut off


def test_an_unanswered_message_says_so_while_another_chat_is_answered(qtbot, make_window):
    """Found by the hour's soak: while a reply was written in one chat, another chat's unanswered message showed
    neither its note nor Retry."""
    w = make_window(max_tokens=4000)
    other = w.store.create("Left unanswered").id
    asked = w.store.add(other, "user", "Are you there?").id
    w.chat.request_options = {"ignore_eos": True}
    w.chat.input.setPlainText("Count to a thousand.")
    w.chat.send_button.click()
    qtbot.waitUntil(lambda: w.chat._reply is not None and bool(w.chat._reply.text), timeout=REPLY_TIMEOUT)
    w.chat.open_conversation(other)
    view = w.chat.views()[-1]
    assert view.message_id == asked and view.note.text() == "This message has no reply."
    assert not view.retry_button.isHidden() and not view.retry_button.isEnabled()  # one reply at a time
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT):
        w.chat.stop()
    assert w.chat.views()[-1].retry_button.isEnabled()
