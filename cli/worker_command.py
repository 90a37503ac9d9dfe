"""`lantern worker`: make this machine a helper that holds a share of a model another machine runs (llama.cpp's RPC
server, with this machine's GPUs, else its CPU). The main machine names it with --rpc or in Settings."""
from __future__ import annotations

import ipaddress
import socket
import sys
import threading

from basics.errors import LanternError
from files.owned_files import cache_dir
from machine.helpers import DEFAULT_PORT, PROTOCOL, is_loopback
from runtimes.llama_library import default_threads

GiB = 1 << 30
EXPOSED = ("llama.cpp's RPC server has no password and no encryption: anyone who can reach {where} can run code "
           "on this machine's devices, read and overwrite their memory, and fill its disk through the tensor cache. "
           "Expose it only on a network you trust (a home LAN behind a router, a cable between two machines, a VPN).")


def add_parser(sub) -> None:
    worker = sub.add_parser("worker", help="hold a share of a model that another machine runs (a helper machine)")
    worker.add_argument("--host", default="127.0.0.1",
                        help="IPv4 address to listen on (beyond loopback needs --insecure: the RPC server has no "
                             "password); 0.0.0.0 listens on every network")
    worker.add_argument("--port", type=int, default=DEFAULT_PORT)
    worker.add_argument("--insecure", action="store_true",
                        help="allow listening beyond loopback, on a network you trust")
    worker.add_argument("--threads", type=int, default=None, help="CPU threads (default: the physical cores)")
    worker.add_argument("--no-cache", action="store_true",
                        help="do not keep received tensors on disk (the cache makes the next load of the same model "
                             "fast)")


def check_bind(host: str, port: int, insecure: bool) -> None:
    """Refuse what llama.cpp's server cannot bind or should not: a name, a port out of range, an address beyond
    loopback without --insecure, a port in use."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise LanternError(f"--host takes an IPv4 address (such as 127.0.0.1, 192.168.1.20 or 0.0.0.0), got "
                           f"{host[:80]!r}: llama.cpp's RPC server listens on IPv4 only.") from None
    if not 1 <= port <= 65535:
        raise LanternError(f"--port must be between 1 and 65535, got {port}.")
    if not address.is_loopback and not insecure:
        where = f"port {port} on any network of this machine" if host == "0.0.0.0" else f"{host}:{port}"
        raise LanternError(f"Listening on {host} exposes this machine to other machines. " + EXPOSED.format(where=where)
                           + " Add --insecure to do it anyway, or keep the default 127.0.0.1 (and reach it through "
                             "an SSH tunnel).")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp's server binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise LanternError(f"Cannot listen on {host}:{port}: {e.strerror or e} (another worker, or another "
                               "program, may use that port: choose another with --port).") from None


def run_worker(args) -> int:
    check_bind(args.host, args.port, args.insecure)
    threads = args.threads or default_threads()
    if not 1 <= threads <= 512:
        raise LanternError(f"--threads must be between 1 and 512, got {threads}.")
    # deferred: llama.cpp's library, for this command only
    from runtimes.rpc_library import local_devices, start_server

    devices = local_devices()
    cache = None
    if not args.no_cache:
        folder = cache_dir() / "rpc-tensors"
        folder.mkdir(parents=True, exist_ok=True)
        cache = str(folder)
    endpoint = f"{args.host}:{args.port}"
    print(f"Lantern helper (llama.cpp RPC protocol {'.'.join(map(str, PROTOCOL))}), {threads} threads", flush=True)
    for _, name, description, free, total in devices:
        print(f"  {name}: {description}, {free / GiB:.1f} of {total / GiB:.1f} GiB free", flush=True)
    print(f"  tensor cache: {cache or 'off'}", flush=True)
    if not is_loopback(args.host):
        print("WARNING: " + EXPOSED.format(where=endpoint), file=sys.stderr, flush=True)
    print(f"Give the main machine this address: {_shown(args.host, args.port)} (lantern --rpc ADDRESS, or the "
          "window's Settings, Helper machines). Ctrl-C stops it.", flush=True)
    ended = threading.Event()

    def serve() -> None:  # llama.cpp's loop never returns while it serves; Ctrl-C must still reach this thread
        try:
            start_server(endpoint, cache, threads, [d[0] for d in devices])
        finally:
            ended.set()

    threading.Thread(target=serve, name="lantern-rpc-server", daemon=True).start()
    try:
        while not ended.wait(0.5):
            pass
    except KeyboardInterrupt:
        return 130
    print(f"lantern: the RPC server stopped: it could not listen on {endpoint} or accept a connection (above).",
          file=sys.stderr)
    return 1


def _shown(host: str, port: int) -> str:
    """The address other machines reach: this machine's own address where it listens on all of them."""
    if host != "0.0.0.0":
        return f"{host}:{port}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the interface a route would use
            return f"{s.getsockname()[0]}:{port}"
    except OSError:
        return f"THIS-MACHINE'S-ADDRESS:{port}"
