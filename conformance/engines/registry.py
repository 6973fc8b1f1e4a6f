"""A throw-away docker-registry (CNCF distribution) on a free 127.0.0.1 port with its own temp
storage, stopped by pid: the plain registry the benchmarks push to and pull from (the tests'
registry fixture, with its TLS and auth modes, is tests/imagetool/conftest.py's)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRegistry:
    """One docker-registry process with an empty storage dir under `parent`. Access logging is
    off so that the registry spends the same (small) CPU on every client."""

    parent: str
    port: int = 0
    root: str = ""
    proc: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> str:
        return os.path.join(self.root, "storage")

    def start(self, attempts: int = 3) -> LocalRegistry:
        self.root = tempfile.mkdtemp(prefix="registry-", dir=self.parent)
        os.makedirs(self.storage)
        last = ""
        for _ in range(attempts):  # another process may grab the port between bind and serve
            self.port = free_port()
            cfg = os.path.join(self.root, "config.yml")
            with open(cfg, "w") as f:
                f.write("version: 0.1\n"
                        "log: {level: error, accesslog: {disabled: true}}\n"
                        f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, "
                        "delete: {enabled: true}}\n"
                        f"http: {{addr: {self.host}}}\n")
            log = open(os.path.join(self.root, "registry.log"), "ab")  # noqa: SIM115
            try:
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", cfg], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True)
            finally:
                log.close()
            self.pids.append(self.proc.pid)
            if self._wait_ready():
                return self
            last = self._log_tail()
            self._kill()
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {last}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.root, "registry.log"), "rb") as f:
                return f.read()[-1000:].decode(errors="replace")
        except OSError:
            return "?"

    def _kill(self) -> None:
        """SIGTERM our process (by pid), then SIGKILL if it does not go within 10 s."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process and remove its storage (idempotent)."""
        try:
            self._kill()
        finally:
            if self.root:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = ""

    def blob_bytes(self) -> int:
        """Bytes of blob data the registry holds (its content-addressed `data` files)."""
        return tree_bytes(os.path.join(self.storage, "docker", "registry", "v2", "blobs"))

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the registry process has used so far."""
        if self.proc is None:
            return 0.0
        with open(f"/proc/{self.proc.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def has_manifest(self, repo: str, tag: str) -> bool:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{tag}",
                                     method="HEAD",
                                     headers={"Accept": MEDIA_MANIFEST})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return False

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
