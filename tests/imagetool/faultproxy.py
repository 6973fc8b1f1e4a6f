"""A tiny HTTP proxy on 127.0.0.1 in front of a test registry, for faults docker-registry
can't make by itself: answer 429 with Retry-After, drop a connection after N body bytes,
or redirect blob GETs to a separate "storage" server. Everything else is forwarded as is.
`rule(method, path, headers, n)` (n = how many requests matched this path before) returns
None to forward or one of Respond/DropAfter/Redirect. Every request is logged."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


@dataclass
class Respond:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class DropAfter:
    """Send the headers and `nbytes` of the body, stall for `hold` seconds, then cut."""

    nbytes: int
    hold: float = 0.0


@dataclass
class Redirect:
    location: str
    status: int = 307


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]
    status: int


Rule = Callable[[str, str, dict[str, str], int], object]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    def __init__(self, upstream: tuple[str, int] | None, rule: Rule | None = None,
                 files: Callable[[str], bytes | None] | None = None) -> None:
        """Forward to `upstream` (host, port); or, with `files`, serve GET path -> bytes."""
        self.upstream = upstream
        self.rule = rule or (lambda *a: None)
        self.files = files
        self.log: list[Logged] = []
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def requests(self, method: str | None = None, contains: str = "") -> list[Logged]:
        with self._lock:
            return [e for e in self.log if (method is None or e.method == method)
                    and contains in e.path]

    def _record(self, h: BaseHTTPRequestHandler, status: int) -> None:
        with self._lock:
            self.log.append(Logged(h.command, h.path, dict(h.headers.items()), status))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        key = (h.command, h.path.split("?", 1)[0])
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
        action = self.rule(h.command, h.path, dict(h.headers.items()), n)
        if isinstance(action, Respond):
            self._record(h, action.status)
            h.send_response(action.status)
            for k, v in action.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(action.body)))
            h.end_headers()
            h.wfile.write(action.body)
            return
        if isinstance(action, Redirect):
            self._record(h, action.status)
            h.send_response(action.status)
            h.send_header("Location", action.location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.files is not None:
            status, headers, data = self._serve_file(h)
        else:
            status, headers, data = self._forward(h, body)
        self._record(h, status)
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        if h.command == "HEAD":
            h.end_headers()
            return
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if isinstance(action, DropAfter):
            h.wfile.write(data[:action.nbytes])
            h.wfile.flush()
            self._stopping.wait(action.hold)
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        h.wfile.write(data)

    def _serve_file(self, h: BaseHTTPRequestHandler) -> tuple[int, list, bytes]:
        assert self.files is not None
        data = self.files(h.path.split("?", 1)[0])
        if data is None:
            return 404, [], b""
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            part = data[start:]
            return 206, [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")], part
        return 200, [("Content-Type", "application/octet-stream")], data

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, list, bytes]:
        assert self.upstream is not None
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP
                   and (h.command == "HEAD" or k.lower() != "content-length")]
            return resp.status, out, data
        except OSError:
            return 502, [], b""
        finally:
            conn.close()
