"""HTTP for the registry client: one pooled requests Session, TLS with the system CAs plus
Docker's certs.d layout per registry, plain HTTP only for loopback and insecure registries,
retries with backoff on 5xx/429 (honouring Retry-After), and redirects followed by hand so
that Authorization never leaves the registry's origin (blob storage gets signed URLs)."""

from __future__ import annotations

import email.utils
import glob
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from imagetool import __version__
from imagetool.registry.config import RegistryConfig, is_loopback
from imagetool.registry.errors import TransportError

USER_AGENT = f"imagetool/{__version__}"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5

Body = bytes | Callable[[], IO[bytes]] | None


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


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


class _ContextAdapter(HTTPAdapter):
    """An adapter whose TLS comes from our own SSLContext (system CAs + certs.d)."""

    def __init__(self, context: ssl.SSLContext, **kw: Any) -> None:
        self._context = context
        super().__init__(pool_connections=4, pool_maxsize=16, **kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        kw["ssl_context"] = self._context
        super().init_poolmanager(*args, **kw)

    @property
    def _cert_reqs(self) -> str:
        return "CERT_NONE" if self._context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> tuple[dict, dict]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        pool["cert_reqs"] = self._cert_reqs
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The context already holds the trust store; don't let requests swap in certifi."""
        conn.cert_reqs = self._cert_reqs


def tls_context(cert_dir: str | None, verify: bool = True) -> ssl.SSLContext:
    """System CAs, plus every *.crt of a certs.d dir, plus its *.cert/*.key client pairs."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if not cert_dir:
        return ctx
    for ca in sorted(glob.glob(os.path.join(cert_dir, "*.crt"))):
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"{ca}: not a usable CA certificate ({e})") from None
    for cert in sorted(glob.glob(os.path.join(cert_dir, "*.cert"))):
        key = cert[:-len(".cert")] + ".key"
        if not os.path.exists(key):
            raise TransportError(f"{cert}: client certificate without {key}")
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"{cert}: not a usable client certificate ({e})") from None
    return ctx


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Transport:
    """Sends requests to registries; knows which scheme and TLS settings each one needs."""

    def __init__(self, config: RegistryConfig | None = None, retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = (10.0, 60.0)) -> None:
        self.config = config or RegistryConfig()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.mount("https://", _ContextAdapter(tls_context(None)))
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16))
        self._bases: dict[str, str] = {}
        self._mounted: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- where a registry lives --------------------------------------------------------------

    def may_use_http(self, registry: str) -> bool:
        return is_loopback(registry) or self.config.is_insecure(registry)

    def _mount_tls(self, registry: str) -> None:
        """Per-registry TLS: its certs.d dir, or no verification when marked insecure."""
        with self._lock:
            if registry in self._mounted:
                return
            cert_dir = self.config.cert_dir(registry)
            insecure = self.config.is_insecure(registry)
            if insecure:  # the user chose this; don't warn on every request
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if cert_dir or insecure:
                ctx = tls_context(cert_dir, verify=not insecure)
                self.session.mount(f"https://{registry}/", _ContextAdapter(ctx))
            self._mounted.add(registry)

    def base_url(self, registry: str) -> str:
        """https://registry, or http:// once a loopback/insecure registry showed it has no TLS."""
        self._mount_tls(registry)
        return self._bases.get(registry, f"https://{registry}")

    def ping(self, registry: str, retry: RetryPolicy | None = None) -> requests.Response:
        """GET /v2/ to learn the scheme and the auth challenge; falls back to plain HTTP when
        allowed and the server doesn't speak TLS (a bad certificate is never a reason)."""
        base = self.base_url(registry)
        try:
            return self.send("GET", f"{base}/v2/", registry=registry, retry=retry)
        except TransportError as e:
            cause = e.__cause__
            no_tls = isinstance(cause, requests.exceptions.SSLError) and _speaks_no_tls(cause)
            if not base.startswith("https://") or not (
                    self.config.is_insecure(registry) or is_loopback(registry) and no_tls):
                raise
        plain = f"http://{registry}"
        resp = self.send("GET", f"{plain}/v2/", registry=registry, retry=retry)
        self._bases[registry] = plain
        return resp

    # -- sending -----------------------------------------------------------------------------

    def send(self, method: str, url: str, *, registry: str, headers: dict[str, str] | None = None,
             body: Body = None, stream: bool = False,
             retry: RetryPolicy | None = None) -> requests.Response:
        """One logical request: retried on 429/5xx and dropped connections, redirects followed
        with Authorization stripped off-origin. Returns the final response (any status)."""
        policy = retry or self.retry
        headers = dict(headers or {})
        attempt = 0
        while True:
            try:
                resp = self._follow(method, url, headers, body, stream, registry)
            except (requests.ConnectionError, requests.Timeout) as e:
                if isinstance(e, requests.exceptions.SSLError) or attempt + 1 >= policy.attempts:
                    raise _transport_error(registry, url, e) from e
                time.sleep(policy.delay(attempt))
                attempt += 1
                continue
            if resp.status_code in RETRY_STATUS and attempt + 1 < policy.attempts:
                wait = policy.delay(attempt, resp.headers.get("Retry-After"))
                resp.close()
                time.sleep(wait)
                attempt += 1
                continue
            return resp

    def _follow(self, method: str, url: str, headers: dict[str, str], body: Body, stream: bool,
                registry: str) -> requests.Response:
        start = origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            if origin(url) != start:
                hdrs.pop("Authorization", None)
            data = body() if callable(body) else body
            try:
                resp = self.session.request(method, url, headers=hdrs, data=data, stream=stream,
                                            allow_redirects=False, timeout=self.timeout)
            finally:
                if callable(body) and data is not None:
                    data.close()
            if resp.status_code not in REDIRECTS or "Location" not in resp.headers:
                return resp
            url = urljoin(url, resp.headers["Location"])
            resp.close()
            if resp.status_code == 303:
                method, body = "GET", None
        raise TransportError(f"{registry}: more than {MAX_REDIRECTS} redirects for {url}")


def _is_verify_failure(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__ or (cur.args[0] if cur.args and isinstance(
            cur.args[0], BaseException) else None)
    return False


_NOT_TLS = ("WRONG_VERSION_NUMBER", "record layer failure", "unknown protocol",
            "http request", "PACKET_LENGTH_TOO_LONG")


def _speaks_no_tls(e: BaseException) -> bool:
    """The handshake failed because the server answered in plain HTTP (not a refused or
    missing certificate, which must stay an error)."""
    return not _is_verify_failure(e) and any(m.lower() in str(e).lower() for m in _NOT_TLS)


def _ssl_reason(e: BaseException) -> str:
    """The innermost SSL message, e.g. `tlsv13 alert certificate required`."""
    m = re.search(r"\[SSL: [A-Z0-9_]+\] ([^(]+?)\s*\(_ssl", str(e))
    return m.group(1) if m else "see the registry's TLS setup"


def _transport_error(registry: str, url: str, e: Exception) -> TransportError:
    if isinstance(e, requests.exceptions.SSLError):
        if _is_verify_failure(e):
            return TransportError(
                f"{registry}: TLS certificate not trusted (put its CA in certs.d/{registry}/ca.crt"
                f" or mark the registry insecure)")
        return TransportError(f"{registry}: TLS handshake failed ({_ssl_reason(e)})")
    if isinstance(e, requests.Timeout):
        return TransportError(f"{registry}: timed out on {url}")
    reason = str(e)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Connection reset"):
        if marker in reason:
            reason = marker.lower()
            break
    return TransportError(f"{registry}: cannot connect ({reason}) for {url}")
