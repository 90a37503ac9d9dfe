"""Lantern leans on two private APIs, each pinned to the versions tested (pyproject.toml): uvicorn's H11Protocol
(app/server/guard.py: header timeouts and the connection limit) and huggingface_hub's file_download.http_get
(models/hub.py: resumable downloads with a hash as the bytes arrive). When an upgrade changes them, these fail by
name instead of the server or a download failing in a user's hands (issue 32)."""
from __future__ import annotations

import inspect


def test_uvicorn_h11_protocol_has_what_the_guard_overrides_and_reads():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    for name, params in {"connection_made": ["self", "transport"], "connection_lost": ["self", "exc"],
                         "handle_events": ["self"], "on_response_complete": ["self"],
                         "send_400_response": ["self", "msg"]}.items():
        method = getattr(H11Protocol, name, None)
        assert method is not None, f"uvicorn's H11Protocol has no {name}"
        assert list(inspect.signature(method).parameters) == params, (name, inspect.signature(method))
    source = inspect.getsource(H11Protocol)
    for attribute in ("self.cycle", "self.conn", "self.transport", "self.loop"):
        assert attribute in source, f"H11Protocol no longer sets {attribute}"


def test_the_guarded_protocol_builds_on_this_uvicorn():
    from app.server.guard import OnceLog, guarded_protocol

    protocol = guarded_protocol(header_seconds=5.0, max_connections=8, once=OnceLog())
    from uvicorn.protocols.http.h11_impl import H11Protocol

    assert issubclass(protocol, H11Protocol)


def test_huggingface_hub_http_get_takes_what_the_downloader_passes():
    from huggingface_hub.file_download import http_get

    params = inspect.signature(http_get).parameters
    for name in ("url", "temp_file", "resume_size", "headers", "expected_size", "tqdm_class"):
        assert name in params, f"huggingface_hub's http_get has no {name!r}: {inspect.signature(http_get)}"
    assert list(params)[:2] == ["url", "temp_file"]
