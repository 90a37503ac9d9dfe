"""Running the endpoint: in the foreground (`lantern serve`) or on a thread (the window, tests)."""
from __future__ import annotations

import ipaddress
import logging
import sys
import threading

from app.server.api import ServerSettings, create_app
from app.server.guard import connection_bound, guarded_protocol
from app.server.service import ModelService
from basics.errors import LanternError

log = logging.getLogger("lantern.server")


class UnsafeBind(LanternError):
    pass


def check_bind(settings: ServerSettings) -> None:
    """Loopback is the default; any other address needs a key, or an explicit --insecure (warned about)."""
    if is_loopback(settings.host) or settings.api_key:
        return
    if not settings.insecure:
        raise UnsafeBind(f"Binding {settings.host} exposes the model to your network: set an API key (--api-key), "
                         "or pass --insecure if you really mean it.")
    print(f"lantern: WARNING: serving on {settings.host} with no API key: anyone who can reach this machine "
          "can use the model.", file=sys.stderr)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LanternServer:
    """uvicorn on a thread; `start()` returns once it listens, `stop()` once it has shut down."""

    def __init__(self, service: ModelService, settings: ServerSettings = ServerSettings()):
        # deferred: uvicorn, only while the server runs
        import uvicorn

        check_bind(settings)
        self.service, self.settings = service, settings
        app = self.app = create_app(service, settings)
        protocol = guarded_protocol(header_seconds=settings.header_timeout_s, once=app.state.once_log,
                                    max_connections=connection_bound(settings.max_connections))
        config = uvicorn.Config(app, host=settings.host, port=settings.port, http=protocol,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> "LanternServer":
        self._thread = threading.Thread(target=self._server.run, name="lantern-server", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            deadline.wait(0.02)
        self.app.state.embeddings.close()  # nothing else will
        raise LanternError(f"The server could not start on {self.settings.host}:{self.settings.port}.")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        self.app.state.embeddings.close()
        self.service.close()

    def run_forever(self) -> None:
        """Serve in the foreground until Ctrl-C."""
        try:
            self._server.run()
        finally:
            self.app.state.embeddings.close()
            self.service.close()
