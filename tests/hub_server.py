"""A small Hugging Face Hub on loopback: the endpoints huggingface_hub calls, serving real files.

/api/models (search), /api/models/{repo} (info with file metadata), and HEAD/GET
/{repo}/resolve/{revision}/{file} with the headers huggingface_hub relies on (ETag, X-Repo-Commit,
Content-Length, Accept-Ranges) and Range requests. Switches for tests: drop the connection after N
bytes, serve wrong bytes, gated (401) and missing (404) repositories, and a count of bytes served.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    path: Path
    sha256: str = ""
    lfs: bool = True
    announce_size: int | None = None  # a listing that lies about the size
    blob_id: str = ""  # git's sha1 of "blob SIZE\0" + the bytes (the Hub's blobId)

    def __post_init__(self):
        data = self.path.read_bytes() if self.path.stat().st_size < 1 << 30 else b""
        if not self.sha256:
            self.sha256 = hashlib.sha256(data).hexdigest()
        if not self.blob_id:
            self.blob_id = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    downloads: int = 0
    tags: tuple[str, ...] = ("gguf",)
    gated: bool = False


@dataclass
class HubState:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    drop_after: int | None = None  # close the connection after this many body bytes (once per set)
    corrupt: set[str] = field(default_factory=set)  # file names served with a flipped byte
    bytes_per_s: float | None = None  # throttle file bodies (a download slow enough to cancel by hand)
    served: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # file -> [(start, bytes sent)]
    raw_info: dict[str, bytes] = field(default_factory=dict)  # repo id -> a listing body served as it is
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: set = field(default_factory=set)  # open keep-alive connections, closed at shutdown

    def add(self, repo: HubRepo) -> None:
        self.repos[repo.repo_id] = repo


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.state.lock:
            self.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.state.lock:
            self.state.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._route(body=True)

    def do_HEAD(self) -> None:
        self._route(body=False)

    def _route(self, *, body: bool) -> None:
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            return self._json(self._search(query))
        if parts[:2] == ["api", "models"] and len(parts) >= 4 and "/".join(parts[2:4]) in self.state.raw_info:
            return self._raw(self.state.raw_info["/".join(parts[2:4])])
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo("/".join(parts[2:4]))
            if repo is not None:
                return self._json(self._info(repo))
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo("/".join(parts[:2]))
            if repo is not None:
                self._file(repo, "/".join(parts[4:]), body=body)
            return
        self._error(404, "EntryNotFound", "not found")

    def _search(self, query: dict) -> list[dict]:
        words = (query.get("search") or [""])[0].lower()
        wanted = set(query.get("filter") or [])
        found = [r for r in self.state.repos.values() if words in r.repo_id.lower() and wanted <= set(r.tags)]
        found.sort(key=lambda r: -r.downloads)
        limit = int((query.get("limit") or [len(found)])[0])
        return [{"id": r.repo_id, "modelId": r.repo_id, "downloads": r.downloads, "likes": 0, "tags": list(r.tags),
                 "library_name": r.tags[0] if r.tags else None, "private": False, "gated": r.gated}
                for r in found[:limit]]

    def _info(self, repo: HubRepo) -> dict:
        siblings = []
        for name, f in repo.files.items():
            size = f.path.stat().st_size if f.announce_size is None else f.announce_size
            entry = {"rfilename": name, "size": size, "blobId": f.blob_id}
            if f.lfs:
                entry["lfs"] = {"size": size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(entry)
        return {"id": repo.repo_id, "modelId": repo.repo_id, "sha": COMMIT, "private": False, "gated": repo.gated,
                "downloads": repo.downloads, "tags": list(repo.tags), "siblings": siblings}

    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        elif repo.gated and "authorization" not in {k.lower() for k in self.headers}:
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                        "and be authenticated to access it.")
            return None
        return repo

    def _file(self, repo: HubRepo, name: str, *, body: bool) -> None:
        f = repo.files.get(name)
        if f is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist")
        size = f.path.stat().st_size
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{f.sha256}"' if f.lfs else f'"{f.blob_id}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if not body:
            return
        try:
            self._send_body(f, name, start)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a cancelled download)
            self.close_connection = True

    def _send_body(self, f: HubFile, name: str, start: int) -> None:
        sent = 0
        with self.state.lock:
            drop = self.state.drop_after
            self.state.drop_after = None
        with f.path.open("rb") as src:
            src.seek(start)
            while block := src.read(1 << 16):
                if drop is not None and sent + len(block) > drop:
                    block = block[: drop - sent]
                    self.wfile.write(block)
                    sent += len(block)
                    self._record(name, start, sent)
                    self.close_connection = True
                    self.connection.shutdown(2)  # the connection drops in the middle of the file
                    return
                if name in self.state.corrupt and sent == 0 and start == 0:
                    block = bytes([block[0] ^ 0xFF]) + block[1:]
                self.wfile.write(block)
                sent += len(block)
                if self.state.bytes_per_s:
                    time.sleep(len(block) / self.state.bytes_per_s)
        self._record(name, start, sent)

    def _record(self, name: str, start: int, sent: int) -> None:
        with self.state.lock:
            self.state.served.setdefault(name, []).append((start, sent))

    def _json(self, data) -> None:
        self._raw(json.dumps(data).encode())

    def _raw(self, raw: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _error(self, status: int, code: str, message: str) -> None:
        raw = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


class HubServer:
    def __init__(self, state: HubState):
        handler = type("Handler", (_Handler,), {"state": state})
        self.state = state
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        with self.state.lock:
            for conn in list(self.state.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes handler threads waiting on a kept-alive client
                except OSError:
                    pass
        self._httpd.server_close()
        self._thread.join(10)
