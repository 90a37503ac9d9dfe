"""Branches instead of overwrites: regenerate keeps the earlier replies, an edit starts a branch, and moving between
them is instant (the branch's KV state comes back from the state cache), on the real starter model."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from window_fixtures import send, stored  # noqa: E402

REPLY_TOKENS = 80  # over the engine's SAVE_WHEN_DISCARDING (64): a branch left behind keeps its state


def _texts(w) -> list[str]:
    return [v.text for v in w.chat.views()]


def test_regenerate_keeps_the_earlier_reply_as_a_variant(qtbot, make_window):
    w = make_window(max_tokens=24)
    assert send(qtbot, w, "Name a colour.") == "done"
    first = w.chat.views()[-1].message_id
    assert not w.chat.views()[-1].next_variant.isVisible()  # one version: no arrows
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000) as done:
        w.chat.views()[-1].regenerate_button.click()
    assert done.args == ["done"]
    reply = w.chat.views()[-1]
    second = reply.message_id
    assert second != first and len(w.chat.views()) == 2 and reply.variant_label.text() == "2/2"
    assert reply.previous_variant.isEnabled() and not reply.next_variant.isEnabled()
    reply.previous_variant.click()
    reply = w.chat.views()[-1]
    assert (reply.message_id, reply.variant_label.text()) == (first, "1/2")
    assert reply.figures.text() and not reply.previous_variant.isEnabled()  # the first reply, with its figures
    reply.next_variant.click()
    assert w.chat.views()[-1].message_id == second
    assert len(w.store.all_messages(w.chat.conversation_id)) == 3  # nothing was overwritten


def test_an_edit_starts_a_branch_and_going_back_restores_its_kv_state(qtbot, make_window):
    w = make_window(max_tokens=REPLY_TOKENS)
    w.chat.request_options = {"ignore_eos": True}  # long replies, whatever the model would say
    assert send(qtbot, w, "Tell me about lighthouses.") == "done"
    lighthouse = stored(w)
    first_stats = w.store.messages(w.chat.conversation_id)[-1].stats
    w.chat.views()[0].edit_button.click()
    w.chat.input.setPlainText("Tell me about boats.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send_button.click()
    user = w.chat.views()[0]
    assert user.text == "Tell me about boats." and user.variant_label.text() == "2/2"
    assert len(w.chat.views()) == 2 and w.chat.notice.text() == ""
    boats = stored(w)
    assert boats != lighthouse

    user.previous_variant.click()  # back to the first question, with its own reply
    assert stored(w) == lighthouse and _texts(w) == [c for _, c, _ in lighthouse]
    assert w.chat.views()[0].variant_label.text() == "1/2"
    assert send(qtbot, w, "Go on.") == "done"
    stats = w.store.messages(w.chat.conversation_id)[-1].stats
    branch = first_stats["prompt_tokens"] + first_stats["completion_tokens"]
    # the lighthouse branch came back from the state cache: only the new turn was computed
    assert stats["restored_tokens"] > 0 and stats["cached_tokens"] >= branch - 1, stats
    assert stats["prefill_tokens"] == stats["prompt_tokens"] - stats["cached_tokens"] < 20
    assert [c for _, c, _ in stored(w)][:2] == [c for _, c, _ in lighthouse]

    w.chat.views()[0].next_variant.click()  # and the boats branch is still there
    assert stored(w) == boats
