"""Registry fixtures: `registry(mode)` starts a real docker-registry (CNCF distribution) on a
free 127.0.0.1 port in its own temp dir, in mode plain | tls | basic | token, and stops it
by pid at the end, also when the test fails. TLS material and the token issuer's JWT keys
are made with `cryptography`; htpasswd comes from apache2-utils."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.engines.registry import free_port
from imagetool.registry.config import RegistryConfig
from imagetool.registry.progress import Reporter
from tests.imagetool.images import Layout, busybox_layout, tar_bytes
from tests.imagetool.token_issuer import Grant, TokenIssuer, registry_auth_config

REGISTRY_BIN = shutil.which("docker-registry")
USER, PASSWORD = "alice", "s3cret"


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(directory: str) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagetool test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ckey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
              .issuer_name(ca_name).public_key(ckey.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = {"ca": os.path.join(directory, "ca.crt"), "cert": os.path.join(directory, "srv.crt"),
             "key": os.path.join(directory, "srv.key"),
             "client_cert": os.path.join(directory, "client.cert"),
             "client_key": os.path.join(directory, "client.key")}
    with open(paths["client_cert"], "wb") as f:
        f.write(client.public_bytes(serialization.Encoding.PEM))
    with open(paths["client_key"], "wb") as f:
        f.write(_key_pem(ckey))
    with open(paths["ca"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key"], "wb") as f:
        f.write(_key_pem(key))
    return paths


@dataclass
class Registry:
    """One docker-registry process and everything it needs, under `root`."""

    mode: str
    root: str
    port: int
    settings: dict[str, Any]
    username: str = USER
    password: str = PASSWORD
    issuer: TokenIssuer | None = None
    certs_d: str | None = None
    client_pair: tuple[str, str] | None = None  # (cert, key) when the registry wants one
    proc: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.mode == "tls" else "http"

    @property
    def storage(self) -> str:
        return os.path.join(self.root, "storage")

    def config(self, **extra: Any) -> RegistryConfig:
        """A RegistryConfig that trusts this registry's CA (and nothing from /etc)."""
        return RegistryConfig(certs_d=[self.certs_d] if self.certs_d else [], **extra)

    def ref(self, repo_tag: str) -> str:
        return f"{self.host}/{repo_tag}"

    def skopeo_args(self, direction: str = "dest") -> list[str]:
        """TLS and credential flags for skopeo talking to this registry."""
        if self.mode == "tls":
            args = [f"--{direction}-cert-dir", os.path.join(self.certs_d or "", self.host)]
        else:
            args = [f"--{direction}-tls-verify=false"]
        if self.mode in ("basic", "token"):
            args.append(f"--{direction}-creds={self.username}:{self.password}")
        return args

    def blob_data_path(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd,
                            "data")

    def start(self) -> Registry:
        cfg_path = os.path.join(self.root, "config.yml")
        with open(cfg_path, "w") as f:
            json.dump(self.settings, f)  # JSON is YAML
        log = open(os.path.join(self.root, "registry.log"), "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", cfg_path], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.pids.append(self.proc.pid)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.client_pair:
            ctx.load_cert_chain(*self.client_pair)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"docker-registry exited: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.scheme}://{self.host}/v2/", timeout=2,
                                       context=ctx if self.mode == "tls" else None)
                return
            except urllib.error.HTTPError:
                return  # 401: up and asking for auth
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"docker-registry on {self.host} not ready: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL now: connections drop mid-transfer, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(os.path.join(self.root, "registry.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def _settings(root: str, port: int) -> dict[str, Any]:
    return {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(root, "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "imagetool-tests"}}


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> dict[str, str]:
    return make_tls(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def registry(tls_material):
    """Factory: `registry("plain"|"tls"|"basic"|"token", grants=[...], expires_in=...)`."""
    made: list[Registry] = []
    issuers: list[TokenIssuer] = []
    roots: list[str] = []

    def start(mode: str = "plain", grants: list[Grant] | None = None, expires_in: int = 300,
              validation: dict | None = None, client_certs: bool = False) -> Registry:
        if mode not in ("plain", "tls", "basic", "token"):
            raise ValueError(mode)
        root = tempfile.mkdtemp(prefix=f"imagetool-registry-{mode}-")
        roots.append(root)
        port = free_port()
        settings = _settings(root, port)
        reg = Registry(mode, root, port, settings)
        if validation:
            settings["validation"] = validation
        if mode == "tls":
            settings["http"]["tls"] = {"certificate": tls_material["cert"],
                                       "key": tls_material["key"]}
            reg.certs_d = os.path.join(root, "certs.d")
            os.makedirs(os.path.join(reg.certs_d, reg.host))
            shutil.copy(tls_material["ca"], os.path.join(reg.certs_d, reg.host, "ca.crt"))
            if client_certs:  # mutual TLS: the registry wants a client cert from our CA
                settings["http"]["tls"]["clientcas"] = [tls_material["ca"]]
                reg.client_pair = (tls_material["client_cert"], tls_material["client_key"])
        elif mode == "basic":
            htpasswd = os.path.join(root, "htpasswd")
            out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                                 capture_output=True, text=True).stdout
            with open(htpasswd, "w") as f:
                f.write(out)
            settings["auth"] = {"htpasswd": {"realm": "test", "path": htpasswd}}
        elif mode == "token":
            issuer = TokenIssuer(users={USER: PASSWORD}, expires_in=expires_in,
                                 grants=grants if grants is not None else [
                                     Grant("*", "*", ("pull", "push"))]).start()
            issuers.append(issuer)
            reg.issuer = issuer
            settings["auth"] = registry_auth_config(issuer, root)
        made.append(reg)
        return reg.start()

    yield start
    for reg in made:
        reg.stop()
    for issuer in issuers:
        issuer.stop()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    alive = [pid for reg in made for pid in reg.pids if _alive(pid)]
    assert not alive, f"registry processes left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.fixture(scope="session")
def busybox_oci(tmp_path_factory) -> str:
    """An OCI layout (tag `latest`) with a busybox rootfs, made by umoci."""
    work = str(tmp_path_factory.mktemp("busybox"))
    return busybox_layout(os.path.join(work, "layout"), work)


@pytest.fixture
def docker_config(tmp_path, monkeypatch) -> str:
    """An empty DOCKER_CONFIG dir for this test, so nothing reads the real ~/.docker."""
    d = str(tmp_path / "docker-config")
    os.makedirs(d)
    monkeypatch.setenv("DOCKER_CONFIG", d)
    return d


class Recorder(Reporter):
    """A reporter that remembers what happened, for assertions (and fault injection)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()

    def _add(self, kind: str, key: str, value: object = None) -> None:
        with self._lock:
            self.events.append((kind, key, value))

    def start(self, key: str, total: int, label: str) -> None:
        self._add("start", key, total)

    def advance(self, key: str, n: int) -> None:
        self._add("advance", key, n)

    def resumed(self, key: str, offset: int) -> None:
        self._add("resumed", key, offset)

    def skipped(self, key: str, label: str, reason: str) -> None:
        self._add("skipped", key, reason)

    def done(self, key: str) -> None:
        self._add("done", key)

    def message(self, text: str) -> None:
        self._add("message", "", text)

    def kinds(self, kind: str) -> list[tuple[str, object]]:
        with self._lock:
            return [(k, v) for t, k, v in self.events if t == kind]


@pytest.fixture
def store(tmp_path):
    from imagetool.store import Store
    return Store(str(tmp_path / "store"))


def assert_clean(st: Any) -> None:
    """Nothing partial: no ingest temp files, every named image complete."""
    assert st.ingest_files() == []
    for desc in st.list_images():
        st.set_image(desc["annotations"]["org.opencontainers.image.ref.name"], desc)


ARCHES = (("amd64", None), ("arm64", "v8"), ("arm", "v7"))


@pytest.fixture(scope="session")
def multiarch(tmp_path_factory) -> dict:
    """Layout tags: `oci` (amd64, arm64/v8, arm/v7 + an attestation), `two` (amd64, arm64),
    `arm64` (that manifest alone)."""
    lay = Layout(str(tmp_path_factory.mktemp("multiarch") / "layout"))
    descs = {a: lay.image([(tar_bytes({f"{a}.txt": a.encode()}), "gzip")], arch=a, variant=v)
             for a, v in ARCHES}
    att = lay.attestation(descs["amd64"])
    lay.tag(lay.index_of([descs["amd64"], att, descs["arm64"], descs["arm"]]), "oci")
    lay.tag(lay.index_of([descs["amd64"], descs["arm64"]]), "two")
    lay.tag(descs["arm64"], "arm64")
    return {"path": lay.path, "descs": descs, "attestation": att}
