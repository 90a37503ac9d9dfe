"""Helper machines: other computers that run llama.cpp's RPC server (`lantern worker`) and hold a share of a model.

This side only asks them questions, in Python over a socket of its own: whether they answer, which version of
llama.cpp's RPC protocol they speak, and each device's free memory. llama.cpp's own RPC client aborts the process
on any of these failures (GGML_ABORT), so nothing reaches it before a helper has answered here, and the model itself
runs in a child process (runtimes/spread_runtime.py).

The protocol (ggml/src/ggml-rpc/ggml-rpc.cpp): a request is | command (1 byte) | size (u64) | data |, a reply is
| size (u64) | data |, little-endian. HELLO (14) must come first; its reply is major, minor, patch, padding and 24
bytes of transport capabilities.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import struct
from dataclasses import dataclass

from basics.errors import LanternError

# The protocol of the llama.cpp that llama-cpp-python 0.3.36 carries (ggml-rpc.h: RPC_PROTO_*_VERSION); the tests
# ask a real `lantern worker` which it speaks, so a new pin that changes it fails there by name.
PROTOCOL = (7, 0, 0)
DEFAULT_PORT = 50052  # llama.cpp's rpc-server's default
CONNECT_TIMEOUT_S = 3.0
# A helper serves one main machine at a time: one that is busy accepts the connection and says nothing until then.
ANSWER_TIMEOUT_S = 5.0
MAX_DEVICES = 16  # GGML_RPC_MAX_SERVERS; a reply claiming more is not a helper
_HELLO, _DEVICE_COUNT, _DEVICE_MEMORY = 14, 15, 11
_CAPS = 24
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*$")


class HelperError(LanternError):
    """A helper machine cannot be used: the message says which, and why."""

    def __init__(self, endpoint: str, message: str):
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class HelperDevice:
    index: int
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Helper:
    """A helper that answered: its address, its protocol version and its devices (GPUs, or its CPU and RAM)."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[HelperDevice, ...]

    @property
    def free_bytes(self) -> int:
        return sum(d.free_bytes for d in self.devices)


def parse_endpoint(text: str) -> str:
    """"host:port" checked (a name, IPv4 address or [IPv6] address; port 1..65535), as llama.cpp takes it."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise HelperError(text, f"A helper is given as host:port (such as 192.168.1.20:{DEFAULT_PORT}), got "
                                f"{text[:80]!r}.")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise HelperError(text, f"The port of helper {text[:80]!r} must be a number from 1 to 65535.")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not _is_address(bare) and not (len(bare) <= 253 and _HOST.match(bare)):
        raise HelperError(text, f"{host[:80]!r} is not a host name or an IP address.")
    if ":" in bare:  # llama.cpp splits host and port at the first colon: an IPv6 address cannot be given to it
        raise HelperError(text, f"{text[:80]!r}: llama.cpp's RPC client takes IPv4 addresses and host names only.")
    return f"{host}:{int(port)}"


def parse_endpoints(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list (or a list) of helpers, checked, duplicates dropped, in order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    found: list[str] = []
    for item in items:
        if item.strip():
            endpoint = parse_endpoint(item)
            if endpoint not in found:
                found.append(endpoint)
    if len(found) > MAX_DEVICES:
        raise HelperError(found[MAX_DEVICES], f"llama.cpp takes at most {MAX_DEVICES} helpers; {len(found)} were "
                                              "given.")
    return tuple(found)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def probe(endpoint: str, *, timeout: float = ANSWER_TIMEOUT_S) -> Helper:
    """Ask the helper at `endpoint` its protocol version and its devices' memory; HelperError says why not."""
    endpoint = parse_endpoint(endpoint)
    host, _, port = endpoint.rpartition(":")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S)
    except socket.gaierror:
        raise HelperError(endpoint, f"Helper {endpoint}: no machine has the name {host!r}.") from None
    except ConnectionRefusedError:
        raise HelperError(endpoint, f"Helper {endpoint} refused the connection: nothing listens there. Start "
                                    f"`lantern worker` on that machine (it prints the address to give here).") from None
    except OSError as e:  # a timeout, no route
        raise HelperError(endpoint, f"Helper {endpoint} cannot be reached: {e.strerror or e}.") from None
    with sock:
        sock.settimeout(timeout)
        try:
            hello = _ask(sock, _HELLO, bytes(_CAPS))
        except EOFError:
            raise HelperError(endpoint, f"Helper {endpoint} closed the connection at the handshake: it speaks another "
                                        f"version of llama.cpp's RPC protocol (Lantern speaks "
                                        f"{_version(PROTOCOL)}), or it is not a llama.cpp RPC server. Run the same "
                                        "Lantern version there.") from None
        except socket.timeout:
            raise HelperError(endpoint, f"Helper {endpoint} accepted the connection but did not answer in "
                                        f"{timeout:.0f} s: it is serving a model now (this machine's or another's: a "
                                        "helper serves one at a time), or it is not a llama.cpp RPC server.") from None
        except OSError as e:
            raise HelperError(endpoint, f"Helper {endpoint} dropped the connection: {e.strerror or e}.") from None
        if len(hello) != 4 + _CAPS:
            raise HelperError(endpoint, f"Helper {endpoint} answered the handshake with {len(hello)} bytes: it is not "
                                        f"a llama.cpp RPC server of protocol {_version(PROTOCOL)}.")
        version = (hello[0], hello[1], hello[2])
        if version[0] != PROTOCOL[0] or version[1] > PROTOCOL[1]:
            raise HelperError(endpoint, f"Helper {endpoint} speaks llama.cpp's RPC protocol {_version(version)}, and "
                                        f"this Lantern speaks {_version(PROTOCOL)}: run the same Lantern version on "
                                        "both machines.")
        try:
            count = _unpack(endpoint, "<I", _ask(sock, _DEVICE_COUNT, b""))[0]
            if not 1 <= count <= MAX_DEVICES:
                raise HelperError(endpoint, f"Helper {endpoint} says it has {count} devices.")
            devices = []
            for i in range(count):
                free, total = _unpack(endpoint, "<QQ", _ask(sock, _DEVICE_MEMORY, struct.pack("<I", i)))
                devices.append(HelperDevice(i, min(free, total), total))
        except (EOFError, OSError):
            raise HelperError(endpoint, f"Helper {endpoint} stopped answering after the handshake.") from None
    return Helper(endpoint, version, tuple(devices))


def probe_all(endpoints: tuple[str, ...]) -> tuple[list[Helper], list[HelperError]]:
    """Every helper that answers, and why each other one cannot be used."""
    found, failed = [], []
    for endpoint in endpoints:
        try:
            found.append(probe(endpoint))
        except HelperError as e:
            failed.append(e)
    return found, failed


def answers(endpoint: str, *, timeout: float = 1.0) -> bool:
    """Whether anything listens at `endpoint` (a helper serving this machine's model does not answer a probe)."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _ask(sock: socket.socket, command: int, data: bytes) -> bytes:
    sock.sendall(bytes([command]) + struct.pack("<Q", len(data)) + data)
    size = struct.unpack("<Q", _read(sock, 8))[0]
    if size > 1 << 16:  # every answer asked for here is a few bytes
        raise EOFError
    return _read(sock, size)


def _read(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise EOFError
        got += chunk
    return bytes(got)


def _unpack(endpoint: str, fmt: str, data: bytes) -> tuple:
    if len(data) != struct.calcsize(fmt):
        raise HelperError(endpoint, f"Helper {endpoint} gave a malformed answer ({len(data)} bytes).")
    return struct.unpack(fmt, data)


def _version(v: tuple[int, int, int]) -> str:
    return ".".join(map(str, v))
