"""Transport against real servers: TLS with a CA made by the test (certs.d layout), plain
HTTP only where allowed, 429/5xx retries honouring Retry-After, and redirects to "blob
storage" that must not carry Authorization. The 429s and redirects come from a small
127.0.0.1 proxy in front of docker-registry (faultproxy.py), since the registry can't make
them itself."""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import socket
import threading
import time

import pytest

from imagetool.pull import pull
from imagetool.registry import manifests
from imagetool.registry.client import RegistryClient
from imagetool.registry.config import ConfigError, RegistryConfig, is_loopback
from imagetool.registry.credentials import Credentials
from imagetool.registry.errors import NotFoundError, RegistryError, TransportError
from imagetool.registry.transport import RetryPolicy, Transport
from imagetool.store import Store
from tests.imagetool.conftest import PASSWORD, USER, assert_clean, free_port
from tests.imagetool.faultproxy import FaultProxy, Redirect, Respond
from tests.imagetool.images import skopeo_copy


def _seed(reg, layout: str, repo: str = "busybox:latest") -> str:
    skopeo_copy(f"oci:{layout}:latest", f"docker://{reg.ref(repo)}", *reg.skopeo_args())
    return reg.ref(repo)


def test_tls_needs_the_ca_from_certs_d(registry, busybox_oci, store, docker_config):
    reg = registry("tls")
    ref = _seed(reg, busybox_oci)
    with pytest.raises(TransportError) as e:
        pull(store, ref, config=RegistryConfig(certs_d=[]), progress=False)
    assert f"{reg.host}: TLS certificate not trusted" in str(e.value)
    assert store.list_images() == []
    digest = pull(store, ref, config=reg.config(), progress=False)  # certs.d/<host>/ca.crt
    assert store.get_image(ref)["digest"] == digest
    # Marked insecure: TLS without verification, like Docker's insecure-registries.
    digest2 = pull(store, ref, config=RegistryConfig(certs_d=[], insecure=[reg.host]),
                   progress=False)
    assert digest2 == digest
    assert_clean(store)


def test_tls_client_certificate_from_certs_d(registry, tls_material, store):
    """certs.d/<host>/client.cert + client.key are offered for mutual TLS, as Docker does."""
    reg = registry("tls", client_certs=True)
    with pytest.raises(TransportError) as e:
        pull(store, reg.ref("x:1"), config=reg.config(), progress=False)
    assert str(e.value).startswith(f"{reg.host}: TLS handshake failed (")
    assert "alert" in str(e.value) and "certificate" in str(e.value)  # the server's refusal
    for name in ("client.cert", "client.key"):
        shutil.copy(tls_material[name.replace(".", "_")],
                    os.path.join(reg.certs_d, reg.host, name))
    with pytest.raises(NotFoundError):  # through TLS now; the registry is just empty
        pull(store, reg.ref("x:1"), config=reg.config(), progress=False)


def test_plain_http_only_for_loopback_or_insecure(registry, busybox_oci, store):
    """(A TLS registry on loopback without certs.d: test_tls_needs_the_ca_from_certs_d.)"""
    reg = registry("plain")
    ref = _seed(reg, busybox_oci)
    t = Transport(RegistryConfig(certs_d=[]))
    try:
        t.ping(reg.host)
        assert t.base_url(reg.host) == f"http://{reg.host}"  # fell back: no TLS there
    finally:
        t.close()
    assert pull(store, ref, config=reg.config(), progress=False)
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:80")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("example.com")
    t = Transport(RegistryConfig(certs_d=[], insecure=["10.0.0.0/8", "reg.lan:5000"]))
    assert t.may_use_http("10.1.2.3:5000") and t.may_use_http("reg.lan:5000")
    assert not t.may_use_http("reg.lan:5001") and not t.may_use_http("example.com")


def test_https_registry_never_downgrades() -> None:
    """A non-loopback, non-insecure registry is https only (checked without any network: tests
    may only talk to 127.0.0.1)."""
    t = Transport(RegistryConfig(certs_d=[]))
    assert t.base_url("registry.example:5000") == "https://registry.example:5000"
    assert not t.may_use_http("registry.example:5000")
    t.close()


def test_refused_connection_fails_fast(store):
    port = free_port()
    start = time.monotonic()
    with pytest.raises(TransportError) as e:
        pull(store, f"127.0.0.1:{port}/x:latest", config=RegistryConfig(certs_d=[]),
             progress=False)
    assert time.monotonic() - start < 10
    assert f"127.0.0.1:{port}: cannot connect (connection refused)" in str(e.value)


def test_not_a_registry(store):
    web = FaultProxy(None, files=lambda path: None).start()
    try:
        with pytest.raises(RegistryError) as e:
            pull(store, f"{web.host}/x:latest", config=RegistryConfig(certs_d=[]),
                 progress=False)
        assert f"{web.host}: not a registry" in str(e.value)
    finally:
        web.stop()


def test_retry_after_on_429_and_5xx(registry, busybox_oci, store):
    reg = registry("plain")
    _seed(reg, busybox_oci)

    def rule(method, path, headers, n):
        if "/manifests/" in path and n == 0:
            return Respond(429, {"Retry-After": "1"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}')
        if "/blobs/" in path and n < 2:
            return Respond(503)
        return None

    proxy = FaultProxy(("127.0.0.1", reg.port), rule).start()
    try:
        start = time.monotonic()
        pull(store, f"{proxy.host}/busybox:latest", config=reg.config(), progress=False)
        assert time.monotonic() - start >= 1.0  # waited as Retry-After said
        assert [e.status for e in proxy.requests("GET", "/manifests/")] == [429, 200]
        for digest in {e.path for e in proxy.requests("GET", "/blobs/")}:
            assert [e.status for e in proxy.requests("GET", digest)] == [503, 503, 200]
    finally:
        proxy.stop()
    assert_clean(store)


def test_429_forever_gives_a_clear_error(registry, busybox_oci, store):
    reg = registry("plain")
    _seed(reg, busybox_oci)
    proxy = FaultProxy(("127.0.0.1", reg.port),
                       lambda m, p, h, n: Respond(429, {"Retry-After": "0"})
                       if "/manifests/" in p else None).start()
    try:
        with pytest.raises(TransportError) as e:
            pull(store, f"{proxy.host}/busybox:latest", config=reg.config(), progress=False)
        assert str(e.value) == (f"{proxy.host}/busybox:latest: rate limited by {proxy.host} "
                                "(HTTP 429)")
        assert len(proxy.requests("GET", "/manifests/")) == RetryPolicy().attempts
    finally:
        proxy.stop()
    assert store.list_images() == []


def test_retry_after_forms() -> None:
    p = RetryPolicy(base=0.5, cap=4, max_retry_after=30)
    assert p.delay(0, "3") == 3
    assert p.delay(0, "999") == 30
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3 <= p.delay(0, later) <= 5.5
    assert p.delay(0, "garbage") == 0.5
    assert [p.delay(i) for i in range(5)] == [0.5, 1, 2, 4, 4]


def test_redirect_to_storage_drops_authorization(registry, busybox_oci, store, docker_config):
    """Blob GETs are redirected to another origin (as S3-backed registries do); the bearer or
    basic credentials of the registry must not follow them there."""
    reg = registry("basic")
    _seed(reg, busybox_oci)

    def blob_bytes(path: str) -> bytes | None:
        digest = path.rsplit("/", 1)[-1]
        try:
            with open(reg.blob_data_path(digest), "rb") as f:
                return f.read()
        except (OSError, IndexError):
            return None

    storage = FaultProxy(None, files=blob_bytes).start()
    proxy = FaultProxy(("127.0.0.1", reg.port), lambda m, p, h, n: Redirect(
        f"http://{storage.host}/bucket/{p.rsplit('/', 1)[-1]}?sig=abc")
        if m == "GET" and "/blobs/sha256:" in p else None).start()
    try:
        with open(os.path.join(docker_config, "config.json"), "w") as f:
            json.dump({"auths": {proxy.host: {"username": USER, "password": PASSWORD}}}, f)
        pull(store, f"{proxy.host}/busybox:latest", config=reg.config(), progress=False)
        got = storage.requests("GET", "/bucket/")
        assert len(got) == 2  # config and layer
        assert all("Authorization" not in e.headers for e in got)
        assert all(e.headers.get("Authorization", "").startswith("Basic ")
                   for e in proxy.requests("GET", "/blobs/"))
    finally:
        proxy.stop()
        storage.stop()
    assert_clean(store)


def test_config_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "registries.json"
    path.write_text('{"mirrors": {"docker.io": ["http://127.0.0.1:1/"]}, '
                    '"insecure": ["r.lan"], "certs_d": "/x"}')
    monkeypatch.setenv("IMAGETOOL_REGISTRIES_CONF", str(path))
    cfg = RegistryConfig.load()
    assert cfg.mirrors_for("docker.io") == ["http://127.0.0.1:1"]
    assert cfg.is_insecure("r.lan") and cfg.certs_d == ["/x"]
    path.write_text('{"mirrors": {"docker.io": ["ftp://x"]}}')
    with pytest.raises(ConfigError, match="must start with http"):
        RegistryConfig.load()
    monkeypatch.setenv("IMAGETOOL_REGISTRIES_CONF", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="file not found"):
        RegistryConfig.load()
    monkeypatch.delenv("IMAGETOOL_REGISTRIES_CONF")
    assert RegistryConfig.load() == RegistryConfig()  # no file at the default path: defaults


def test_client_basic_credentials_explicit(registry, busybox_oci):
    reg = registry("basic")
    _seed(reg, busybox_oci)
    with RegistryClient(reg.host, config=reg.config(),
                        credentials=Credentials(USER, PASSWORD)) as c:
        m = manifests.fetch(c, "busybox", "latest", "busybox")
        assert manifests.head(c, "busybox", "latest") == m.digest
        assert manifests.head(c, "busybox", "nope") is None


class RawServer:
    """A bare HTTP/1.1 server on 127.0.0.1 that notes how each connection starts (its request
    line, or "TLS" for a ClientHello, which it hangs up on) and answers every request with
    200 `{}`, keeping the connection open, or with `per_conn` set, closing it silently after
    that many answers (as servers drop idle keep-alive connections)."""

    def __init__(self, per_conn: int | None = None) -> None:
        self.per_conn = per_conn
        self.starts: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            n = 0
            while self.per_conn is None or n < self.per_conn:
                if f.peek(1)[:1] == b"\x16":
                    self.starts.append(b"TLS")
                    return
                line = f.readline()
                if not line:
                    return
                if n == 0:
                    self.starts.append(line)
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                n += 1

    def close(self) -> None:
        self.sock.close()


def test_loopback_is_plain_http_first_and_connections_are_reused():
    """No TLS attempt on a loopback registry without a certs.d dir; the scheme is remembered
    and every request after the ping goes over the same keep-alive connection."""
    srv = RawServer()
    t = Transport(RegistryConfig(certs_d=[]))
    try:
        with t.ping(srv.host) as resp:
            assert resp.status_code == 200
        assert t.base_url(srv.host) == f"http://{srv.host}"
        for i in range(3):
            assert t.send("GET", f"{t.base_url(srv.host)}/v2/x/manifests/{i}",
                          registry=srv.host).json() == {}
    finally:
        t.close()
        srv.close()
    assert srv.starts == [b"GET /v2/ HTTP/1.1\r\n"]


def test_connection_closed_while_idle_is_replaced_not_retried():
    """A pooled connection the server closed meanwhile costs no retry (attempts=1 here)."""
    srv = RawServer(per_conn=1)
    t = Transport(RegistryConfig(certs_d=[]), retry=RetryPolicy(attempts=1))
    try:
        t.ping(srv.host).close()
        for i in range(3):
            assert t.send("GET", f"http://{srv.host}/v2/{i}", registry=srv.host).json() == {}
    finally:
        t.close()
        srv.close()
    assert len(srv.starts) == 4 and b"TLS" not in srv.starts


def test_http_proxy_from_the_environment(registry, busybox_oci, store, tmp_path, monkeypatch):
    """http_proxy is used as requests used it (absolute URLs to the proxy), no_proxy too."""
    reg = registry("plain")
    ref = _seed(reg, busybox_oci)
    proxy = FaultProxy(("127.0.0.1", reg.port)).start()
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        monkeypatch.setenv("http_proxy", f"http://{proxy.host}")
        digest = pull(store, ref, config=reg.config(), progress=False)
        paths = [e.path for e in proxy.requests()]
        assert any("/blobs/sha256:" in p for p in paths)
        assert all(p.startswith(f"http://{reg.host}/v2/") for p in paths)
        monkeypatch.setenv("no_proxy", "example.com,127.0.0.0/8")
        other = Store(str(tmp_path / "other"))
        assert pull(other, ref, config=reg.config(), progress=False) == digest
        assert len(proxy.requests()) == len(paths)
    finally:
        proxy.stop()
    assert_clean(store)
