"""HTTP for the registry client, on the standard library's http.client: keep-alive connections
pooled per origin, TLS with the system CAs plus Docker's certs.d layout per registry, plain
HTTP only for loopback and insecure registries, retries with backoff on 5xx/429 (honouring
Retry-After), redirects followed by hand so that Authorization never leaves the registry's
origin (blob storage gets signed URLs), and the proxies of the environment (http_proxy,
https_proxy, all_proxy, no_proxy; plain-HTTP proxies, CONNECT for https).

Cheap to start, since every CLI command pays for it: TLS contexts are built on the first
https request that needs one; a loopback registry without a certs.d dir is asked in plain
HTTP first (what local registries speak) and only goes to TLS when the answer says the port
is TLS; the scheme that worked is remembered per registry. requests/urllib3 are not used:
they cost ~50 ms of imports per command. File bodies go out with sendfile(2) (1 MiB blocks
over TLS) and blob bodies are read into the caller's buffer (`Response.readinto`)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from imagetool import __version__, debuglog
from imagetool.registry.config import RegistryConfig, in_network, is_loopback
from imagetool.registry.errors import TransportError
from imagetool.registry.tls import speaks_no_tls, tls_context, transport_error

USER_AGENT = f"imagetool/{__version__}"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
SEND_BLOCK = 1 << 20  # request bodies over TLS go out in blocks of this size
SENDFILE_SLICE = 8 << 20  # progress is reported after each sendfile(2) slice
DRAIN_MAX = 64 << 10  # an unread rest up to this size is read so the connection is reused
MAX_IDLE = 16  # idle connections kept per origin


@dataclass(frozen=True)
class FileBody:
    """A request body read from `length` bytes of a file at `offset`: replayable (the file is
    reopened for every attempt and redirect); `progress(n)` is called as bytes leave."""

    path: str
    offset: int
    length: int
    progress: Callable[[int], None] | None = None


Body = bytes | FileBody | None


class ConnectionDropped(TransportError):
    """The connection ended before the response body did (or timed out while reading it).
    Retried by `send` for buffered bodies; streamed readers (blob downloads) resume."""


@dataclass
class RetryPolicy:
    """How often and how long to retry: short enough that a dead registry fails in seconds."""

    attempts: int = 5
    base: float = 0.25
    cap: float = 4.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            wait = _parse_retry_after(retry_after)
            if wait is not None:
                return min(max(wait, 0.0), self.max_retry_after)
        return min(self.base * (2 ** attempt), self.cap)


ONCE = RetryPolicy(attempts=1)


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # rare: only for an HTTP-date Retry-After
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Headers(dict):
    """Response headers: case-insensitive, repeated fields joined with ", " (so two
    Www-Authenticate challenges arrive as one list, as HTTP defines)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for k, v in pairs:
            k = k.lower()
            super().__setitem__(k, f"{super().__getitem__(k)}, {v}" if k in self else v)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


_PoolKey = tuple[str, str, "_Proxy | None"]


class Response:
    """One response. Read its body with `content`/`json()` (buffered requests have it
    already), `read(n)`, `iter_content(n)` or `readinto(buf)`; `close()` (or `with`) hands
    the connection back for reuse when the body was read to its end."""

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 key: _PoolKey, transport: Transport, url: str) -> None:
        self.status_code = raw.status
        self.reason = raw.reason
        self.headers = Headers(raw.getheaders())
        self.url = url
        self._raw = raw
        self._conn: http.client.HTTPConnection | None = conn
        self._key = key
        self._transport = transport
        self._content: bytes | None = None
        self._pos = 0

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dropped(self, e: BaseException | None) -> ConnectionDropped:
        self._discard()
        why = f"{e}" if e else "closed early"
        return ConnectionDropped(f"{origin(self.url)[1]}: connection dropped ({why}) while "
                                 f"reading {self.url}")

    def _check_short(self, n: int, wanted: int) -> None:
        """http.client reports a Content-Length body cut short as an early end (0 bytes)."""
        if not n and wanted and self._raw.length:
            raise self._dropped(None)

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the body (all of it when n < 0); b"" at its end."""
        if self._content is not None:  # buffered already
            end = len(self._content) if n < 0 else self._pos + n
            data = self._content[self._pos:end]
            self._pos += len(data)
            return data
        want = self._raw.length
        try:
            data = self._raw.read() if n < 0 else self._raw.read(n)
        except (OSError, http.client.HTTPException) as e:
            raise self._dropped(e) from e
        if n < 0 and want is not None and len(data) < want:
            raise self._dropped(None)
        self._check_short(len(data), n)
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        """Fill `buf` with the next bytes of the body; 0 at its end."""
        try:
            n = self._raw.readinto(buf)
        except (OSError, http.client.HTTPException) as e:
            raise self._dropped(e) from e
        self._check_short(n, len(buf))
        return n

    def iter_content(self, n: int = 1 << 20) -> Iterator[bytes]:
        while chunk := self.read(n):
            yield chunk

    @property
    def content(self) -> bytes:
        if self._content is None:
            data = self.read()
            self.close()
            self._content, self._pos = data, 0
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        raw = self._raw
        if not raw.isclosed() and not raw.will_close and raw.length is not None and \
                raw.length <= DRAIN_MAX:
            try:
                raw.read()  # the small rest (an error body, a HEAD): keep the connection
            except (OSError, http.client.HTTPException):
                pass
        if raw.isclosed() and not raw.will_close and conn.sock is not None:
            self._conn = None
            self._transport._put(self._key, conn)
        else:
            self._discard()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        self._raw.close()
        if conn is not None:
            conn.close()


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    headers: tuple[tuple[str, str], ...]


def _env(name: str) -> str:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or ""


class Transport:
    """Sends requests to registries; knows which scheme and TLS settings each one needs.
    Thread-safe: connections are taken from and returned to a pool under a lock."""

    def __init__(self, config: RegistryConfig | None = None, retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = (10.0, 60.0)) -> None:
        self.config = config or RegistryConfig()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._bases: dict[str, str] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._default_context: ssl.SSLContext | None = None
        self._idle: dict[_PoolKey, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._proxies = {s: _env(f"{s}_proxy") for s in ("http", "https", "all")}
        self._no_proxy = [x.strip().lstrip(".").lower() for x in _env("no_proxy").split(",")
                          if x.strip()]

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()

    # -- where a registry lives --------------------------------------------------------------

    def may_use_http(self, registry: str) -> bool:
        return is_loopback(registry) or self.config.is_insecure(registry)

    def base_url(self, registry: str) -> str:
        """https://registry, or http:// once a loopback/insecure registry showed it has no TLS."""
        return self._bases.get(registry, f"https://{registry}")

    def _plain_first(self, registry: str) -> bool:
        """Loopback registries are plain HTTP as a rule; one with a certs.d dir is TLS."""
        return is_loopback(registry) and self.config.cert_dir(registry) is None

    def ping(self, registry: str, retry: RetryPolicy | None = None) -> Response:
        """GET /v2/ to learn the scheme and the auth challenge. TLS first, falling back to
        plain HTTP when allowed and the server doesn't speak TLS (a bad certificate is never a
        reason); loopback without a certs.d dir the other way round: plain first, TLS (as
        configured, verified) when the port turns out to speak TLS."""
        known = self._bases.get(registry)
        plain, tls = f"http://{registry}", f"https://{registry}"
        if known is None and self._plain_first(registry):
            resp = self._probe_plain(registry, retry)
            if resp is not None:
                self._bases[registry] = plain
                return resp
            try:
                resp = self.send("GET", f"{tls}/v2/", registry=registry, retry=retry)
            except TransportError as e:
                if not speaks_no_tls(e.__cause__):
                    raise
                # plain HTTP after all (that answered 400): let the caller see that answer
                resp = self.send("GET", f"{plain}/v2/", registry=registry, retry=retry)
                self._bases[registry] = plain
                return resp
            self._bases[registry] = tls
            return resp
        base = known or tls
        try:
            return self.send("GET", f"{base}/v2/", registry=registry, retry=retry)
        except TransportError as e:
            no_tls = isinstance(e.__cause__, ssl.SSLError) and speaks_no_tls(e.__cause__)
            if not base.startswith("https://") or not (
                    self.config.is_insecure(registry) or is_loopback(registry) and no_tls):
                raise
        resp = self.send("GET", f"{plain}/v2/", registry=registry, retry=retry)
        self._bases[registry] = plain
        return resp

    def _probe_plain(self, registry: str, retry: RetryPolicy | None) -> Response | None:
        """GET http://registry/v2/ once; None when what answers is a TLS server (Go's and
        nginx's answer plain HTTP with 400, others hang up or send a TLS alert)."""
        url = f"http://{registry}/v2/"
        try:
            resp = self.send("GET", url, registry=registry, retry=ONCE)
        except TransportError as e:
            if isinstance(e.__cause__, (ConnectionRefusedError, socket.gaierror, TimeoutError)):
                # nothing (reachable) there yet: the usual patience, still in plain HTTP
                return self.send("GET", url, registry=registry, retry=retry)
            return None
        if resp.status_code == 400:
            resp.close()
            return None
        if resp.status_code in RETRY_STATUS:
            resp.close()
            return self.send("GET", url, registry=registry, retry=retry)
        return resp

    # -- sending -----------------------------------------------------------------------------

    def send(self, method: str, url: str, *, registry: str, headers: dict[str, str] | None = None,
             body: Body = None, stream: bool = False,
             retry: RetryPolicy | None = None) -> Response:
        """One logical request: retried on 429/5xx and dropped connections, redirects followed
        with Authorization stripped off-origin. Returns the final response (any status); its
        body is read already unless `stream`."""
        policy = retry or self.retry
        headers = dict(headers or {})
        attempt = 0
        while True:
            try:
                resp = self._follow(method, url, headers, body, stream, registry)
            except ssl.SSLError as e:  # certificates and handshakes don't get better by retrying
                raise transport_error(registry, url, e) from e
            except ConnectionDropped as e:
                if attempt + 1 >= policy.attempts:
                    raise TransportError(str(e)) from e.__cause__
                time.sleep(policy.delay(attempt))
                attempt += 1
                continue
            except (OSError, http.client.HTTPException) as e:
                if attempt + 1 >= policy.attempts:
                    raise transport_error(registry, url, e) from e
                time.sleep(policy.delay(attempt))
                attempt += 1
                continue
            if resp.status_code in RETRY_STATUS and attempt + 1 < policy.attempts:
                wait = policy.delay(attempt, resp.headers.get("Retry-After"))
                debuglog.debug("registry", "%s: retry in %.2fs", resp.status_code, wait)
                resp.close()
                time.sleep(wait)
                attempt += 1
                continue
            return resp

    def _follow(self, method: str, url: str, headers: dict[str, str], body: Body, stream: bool,
                registry: str) -> Response:
        start = origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            if origin(url) != start:
                hdrs.pop("Authorization", None)
            resp = self._once(method, url, hdrs, body, stream)
            if resp.status_code not in REDIRECTS or "Location" not in resp.headers:
                return resp
            url = urljoin(url, resp.headers["Location"])
            resp.close()
            if resp.status_code == 303:
                method, body = "GET", None
        raise TransportError(f"{registry}: more than {MAX_REDIRECTS} redirects for {url}")

    def _once(self, method: str, url: str, headers: dict[str, str], body: Body,
              stream: bool) -> Response:
        """One HTTP exchange, on an idle pooled connection when there is one (and on a new one
        if that turns out to have been closed by the server meanwhile)."""
        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"{url}: not an http(s) URL")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        proxy = self._proxy_for(scheme, host, port)
        key: _PoolKey = (scheme, netloc, proxy)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = {"Host": netloc, "User-Agent": USER_AGENT, **headers}
        if proxy and scheme == "http":  # a plain proxy gets the whole URL and its credentials
            target = f"http://{netloc}{target}"
            hdrs.update(proxy.headers)
        while True:
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                conn = self._connect(scheme, host, port, netloc, proxy)
            cut: OSError | None = None
            try:
                try:
                    _send_request(conn, method, target, hdrs, body)
                except (BrokenPipeError, ConnectionResetError) as e:
                    cut = e  # it may have answered before hanging up (a 401 to a big body)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                conn.close()
                if reused:  # the server closed it while idle; nothing was processed
                    continue
                raise (cut or e) from None
            except BaseException:
                conn.close()
                raise
            if cut is not None:
                raw.will_close = True  # half-sent: never reuse this connection
            debuglog.debug("registry", "%s %s://%s%s -> %s (%s connection)", method, scheme,
                           netloc, parts.path, raw.status, "pooled" if reused else "new")
            resp = Response(raw, conn, key, self, url)
            if not stream:
                resp.content  # noqa: B018 - read it all now: the connection goes back
            return resp

    def _connect(self, scheme: str, host: str, port: int, netloc: str,
                 proxy: _Proxy | None) -> http.client.HTTPConnection:
        connect_timeout, read_timeout = self.timeout
        where = (proxy.host, proxy.port) if proxy else (host, port)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(*where, timeout=connect_timeout,
                                               context=self._context(netloc))
            if proxy:
                conn.set_tunnel(host, port, headers=dict(proxy.headers))
        else:
            conn = http.client.HTTPConnection(*where, timeout=connect_timeout)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        assert conn.sock is not None
        conn.sock.settimeout(read_timeout)
        return conn

    def _take(self, key: _PoolKey) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _put(self, key: _PoolKey, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def _context(self, netloc: str) -> ssl.SSLContext:
        """The TLS settings for one host[:port], made on its first https request: its certs.d
        dir, or no verification when marked insecure, else the shared system-CA context."""
        with self._lock:
            ctx = self._contexts.get(netloc)
            if ctx is None:
                cert_dir = self.config.cert_dir(netloc)
                insecure = self.config.is_insecure(netloc)
                if cert_dir or insecure:
                    ctx = tls_context(cert_dir, verify=not insecure)
                else:
                    if self._default_context is None:
                        self._default_context = tls_context(None)
                    ctx = self._default_context
                self._contexts[netloc] = ctx
            return ctx

    def _proxy_for(self, scheme: str, host: str, port: int) -> _Proxy | None:
        """The environment's proxy for this URL, as requests/curl read it (no_proxy: names,
        domain suffixes, host:port, CIDRs, or *)."""
        url = self._proxies.get(scheme) or self._proxies.get("all")
        if not url or _bypass(self._no_proxy, host, port):
            return None
        p = urlsplit(url if "://" in url else f"http://{url}")
        if p.scheme != "http" or not p.hostname:
            raise TransportError(f"proxy {url}: only http:// proxies are supported")
        headers: tuple[tuple[str, str], ...] = ()
        if p.username is not None:
            cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
            headers = (("Proxy-Authorization", "Basic " + base64.b64encode(cred).decode()),)
        return _Proxy(p.hostname, p.port or 80, headers)


def _bypass(no_proxy: list[str], host: str, port: int) -> bool:
    host = host.lower()
    for entry in no_proxy:
        if entry == "*" or entry in (host, f"{host}:{port}") or host.endswith(f".{entry}"):
            return True
        if in_network(host, entry):
            return True
    return False


def _send_request(conn: http.client.HTTPConnection, method: str, target: str,
                  headers: dict[str, str], body: Body) -> None:
    if not isinstance(body, FileBody):
        conn.request(method, target, body=body, headers=headers)
        return
    conn.putrequest(method, target, skip_host=True)
    for k, v in {**headers, "Content-Length": str(body.length)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    assert conn.sock is not None
    _send_file(conn.sock, body)


def _send_file(sock: socket.socket, body: FileBody) -> None:
    """The file's bytes straight from the page cache (sendfile), or in 1 MiB blocks over TLS."""
    with open(body.path, "rb") as f:
        offset, left = body.offset, body.length
        if isinstance(sock, ssl.SSLSocket):
            buf = memoryview(bytearray(min(SEND_BLOCK, max(left, 1))))
            f.seek(offset)
            while left:
                n = f.readinto(buf[:min(left, len(buf))])
                if not n:
                    raise OSError(f"{body.path}: shorter than the {body.length} bytes to send")
                sock.sendall(buf[:n])
                left -= n
                if body.progress:
                    body.progress(n)
            return
        while left:
            n = sock.sendfile(f, offset, min(left, SENDFILE_SLICE))
            if not n:
                raise OSError(f"{body.path}: shorter than the {body.length} bytes to send")
            offset += n
            left -= n
            if body.progress:
                body.progress(n)
