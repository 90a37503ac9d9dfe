"""Helper machines in the window: Settings keeps their addresses (checked), the Models page asks them what they
have, and the command line uses them for a model this machine cannot hold alone."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from helper_machines import Worker, free_port  # noqa: E402


@pytest.fixture
def helper():
    w = Worker()
    yield w
    w.stop()


def test_settings_keep_helpers_and_the_models_page_asks_them(qtbot, make_window, monkeypatch, helper):
    w = make_window()
    page = w.settings_page
    qtbot.waitUntil(lambda: w.models_page.hardware is not None, timeout=30_000)
    assert w.models_page.hardware.helpers == ()
    page.widgets["helpers"].setText("192.168.1.20")
    assert not page.save()
    assert page.message.text().startswith("Not saved: helpers.0: A helper is given as host:port")
    assert w.settings.current.helpers == []  # nothing of a refused value is kept
    page.widgets["helpers"].setText(f" {helper.endpoint} ")
    assert page.save() and w.settings.current.helpers == [helper.endpoint]
    assert not page.reload_button.isHidden()  # where a model runs may change: it applies at the next load
    qtbot.waitUntil(lambda: w.models_page.hardware.helpers != (), timeout=60_000)
    (asked,) = w.models_page.hardware.helpers
    assert asked.endpoint == helper.endpoint and asked.devices[0].total_bytes > 0
    qtbot.waitUntil(lambda: helper.endpoint in page.helpers_status.text(), timeout=10_000)
    assert "GiB free on 1 device" in page.helpers_status.text()  # what it answered, under the field
    closed = f"127.0.0.1:{free_port()}"
    page.widgets["helpers"].setText(f"{helper.endpoint}, {closed}")
    assert page.save()
    qtbot.waitUntil(lambda: closed in page.helpers_status.text(), timeout=60_000)
    assert "refused the connection" in page.helpers_status.text()
    page.widgets["helpers"].setText(helper.endpoint)
    assert page.save()
    qtbot.waitUntil(lambda: closed not in page.helpers_status.text(), timeout=60_000)
    # the catalog sorts and groups with models that fit only with the helper (a model too big here alone)
    qtbot.waitUntil(lambda: all(f is not None for f in w.models_page.fits.values()), timeout=30_000)
    with_helper = {n for n, f in w.models_page.fits.items() if f.verdict == "helpers"}
    assert all(w.models_page.fits[n].badge == "fits with 2 machines" for n in with_helper)
    assert [e.name for e in w.models_page.catalog_view.shown()]  # sorted with the new group among the others
    monkeypatch.setenv("LANTERN_DATA_DIR", str(w.library.root))
    from cli.main import _options, build_parser

    options = _options(build_parser().parse_args(["chat"]))
    assert options.helpers == (helper.endpoint,) and options.helpers_when_needed  # only where it does not fit
    options = _options(build_parser().parse_args(["chat", "--rpc", "10.0.0.9:50052"]))
    assert options.helpers == ("10.0.0.9:50052",) and not options.helpers_when_needed  # --rpc: for this model


def test_the_remote_servers_key_is_a_setting_shown_with_the_remote_backend(qtbot, make_window):
    from PySide6.QtWidgets import QLineEdit

    w = make_window()
    page = w.settings_page
    assert not page.shown("remote_key")
    page.widgets["backend"].setCurrentText("remote")
    assert page.shown("remote_key") and page.widgets["remote_key"].echoMode() == QLineEdit.EchoMode.Password
    page.widgets["remote_url"].setText("http://gpu-server:8000/v1")
    page.widgets["remote_key"].setText("team-key")
    assert page.save() and w.settings.current.remote_key == "team-key"
    page.widgets["backend"].setCurrentText("auto")
    assert not page.shown("remote_key")


def test_a_helper_lost_mid_reply_leaves_the_window_and_the_chat_and_the_next_reply_runs_without_it(
        qtbot, make_window, monkeypatch):
    """The starter spread over a helper (this machine made too small for it alone), the helper killed while the reply
    streams: the reply ends in an error naming it, the window and the chat stay, and a regenerate loads the model
    again without it."""
    import dataclasses

    import machine.hardware
    from window_fixtures import REPLY_TIMEOUT, stored

    real = machine.hardware.detect
    monkeypatch.setattr(machine.hardware, "detect",
                        lambda helpers=(): dataclasses.replace(real(helpers), ram_available_bytes=512 << 20))
    doomed = Worker()
    try:
        w = make_window(helpers=[doomed.endpoint], max_tokens=400)
        w.chat.input.setPlainText("Write a long story about a lighthouse.")
        with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT) as done:
            w.chat.send_button.click()
            qtbot.waitSignal(w.chat.session.sig_text_received, timeout=REPLY_TIMEOUT).wait()
            doomed.stop()
        assert done.args == ["error"]
        assert w.load_progress.stage.startswith("sending its share to 1 helper machine")  # said beside the progress
        (_, (role, _text, status)) = stored(w)
        assert (role, status) == ("assistant", "error")
        note = w.chat.views()[-1].note.text()
        assert doomed.endpoint in note and "stopped answering" in note, note
        assert w.isVisible()
        reply = w.chat.views()[-1]
        button = reply.regenerate_button if reply.regenerate_button.isEnabled() else w.chat.views()[0].retry_button
        with qtbot.waitSignal(w.chat.sig_reply_done, timeout=REPLY_TIMEOUT * 2) as again:
            button.click()
        assert again.args == ["done"]
        assert stored(w)[-1][2] == "done"
    finally:
        doomed.stop()
