"""Helpers for the registry benchmark: a throw-away docker-registry (CNCF distribution) on a
free 127.0.0.1 port with its own temp storage, stopped by pid; and a ~300 MB, five-layer OCI
image built here without the internet (gzip layers, as registries usually serve them)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SEED = 20240607
GZIP_LEVEL = 6  # what `gzip` and Go's compress/gzip default to (DefaultCompression)
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
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


# -- the image --------------------------------------------------------------------------------
# (name, source dirs on this machine, byte budget of uncompressed file data); then two layers
# of generated files. Random bytes don't compress, so the blob total stays near 300 MB
# whatever this machine's /usr holds.
HOST_LAYERS = (
    ("usr-lib", ("usr/lib",), 140 << 20),
    ("usr-share", ("usr/share",), 130 << 20),
    ("usr-bin", ("usr/bin", "usr/sbin"), 100 << 20),
)
RANDOM_LAYER = ("random", 4, 24 << 20)  # four files of 24 MiB of random bytes
APP_LAYER = ("app", 16 << 20, 24 << 20)  # 16 MiB random + 24 MiB of text-ish files


class _HashingFile:
    """A write-only file that hashes and counts what passes through to `inner`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def _ti(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class _Layer:
    """Writes one gzip tar layer straight into the layout's blobs dir: tar -> sha256 (diff_id)
    -> gzip -> sha256 (digest) -> file."""

    def __init__(self, blobs: str) -> None:
        self.blobs = blobs
        fd, self.tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
        self.raw = os.fdopen(fd, "wb")
        self.compressed = _HashingFile(self.raw)
        self.gz = gzip.GzipFile(fileobj=self.compressed, mode="wb", compresslevel=GZIP_LEVEL,
                                mtime=0)
        self.uncompressed = _HashingFile(self.gz)
        self.tar = tarfile.open(fileobj=self.uncompressed, mode="w|",  # noqa: SIM115
                                format=tarfile.PAX_FORMAT)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), mode, 1_700_000_000
        self.tar.addfile(_ti(ti), io.BytesIO(data))

    def add_dir(self, name: str) -> None:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        self.tar.addfile(_ti(ti))

    def finish(self) -> dict[str, Any]:
        self.tar.close()
        self.gz.close()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        hexd = self.compressed.h.hexdigest()
        os.rename(self.tmp, os.path.join(self.blobs, hexd))
        return {"mediaType": MEDIA_LAYER, "digest": f"sha256:{hexd}", "size": self.compressed.n,
                "diff_id": f"sha256:{self.uncompressed.h.hexdigest()}",
                "tar_bytes": self.uncompressed.n}


def _host_layer(layer: _Layer, sources: tuple[str, ...], budget: int) -> int:
    """Files from this machine's dirs, walked in sorted order until `budget` bytes of regular
    file data are in; directories, symlinks and hardlinks come along as tar records."""
    used = 0
    for src in sources:
        for dirpath, dirnames, files in os.walk("/" + src):
            dirnames.sort()
            if used >= budget:
                return used
            rel = dirpath.lstrip("/")
            layer.tar.add(dirpath, arcname=rel, recursive=False, filter=_ti)
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    if used + st.st_size > budget or not os.access(path, os.R_OK):
                        continue
                    used += st.st_size
                elif not stat.S_ISLNK(st.st_mode):
                    continue  # sockets, fifos, devices: not in a benchmark image
                layer.tar.add(path, arcname=os.path.join(rel, name), recursive=False,
                              filter=_ti)
    return used


def build_layout(path: str) -> dict[str, Any]:
    """Write a five-layer OCI image layout at `path`, tagged `latest`; returns its facts."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    rng = random.Random(SEED)
    layers = []
    for name, sources, budget in HOST_LAYERS:
        layer = _Layer(blobs)
        _host_layer(layer, sources, budget)
        layers.append({"name": name, **layer.finish()})
    name, count, each = RANDOM_LAYER
    layer = _Layer(blobs)
    layer.add_dir("data")
    for i in range(count):
        layer.add_bytes(f"data/random-{i}.bin", rng.randbytes(each))
    layers.append({"name": name, **layer.finish()})
    name, random_bytes, text_bytes = APP_LAYER
    layer = _Layer(blobs)
    for d in ("app", "app/assets", "app/src"):
        layer.add_dir(d)
    layer.add_bytes("app/assets/blob.bin", rng.randbytes(random_bytes))
    words = [rng.randbytes(rng.randint(2, 8)).hex() for _ in range(4096)]
    i = 0
    written = 0
    while written < text_bytes:  # many small source-like files: gzip gets ~3x on these
        lines = [" ".join(rng.choices(words, k=12)) for _ in range(rng.randint(50, 400))]
        data = ("\n".join(lines) + "\n").encode()
        layer.add_bytes(f"app/src/mod{i:05d}.py", data)
        written += len(data)
        i += 1
    layers.append({"name": name, **layer.finish()})

    config = {
        "created": "2024-06-07T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"], "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": [ly["diff_id"] for ly in layers]},
        "history": [{"created": "2024-06-07T00:00:00Z", "created_by": f"bench layer {ly['name']}"}
                    for ly in layers],
    }
    cfg_desc = _put_json(blobs, config, MEDIA_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": cfg_desc,
                "layers": [{k: ly[k] for k in ("mediaType", "digest", "size")} for ly in layers]}
    man_desc = _put_json(blobs, manifest, MEDIA_MANIFEST)
    man_desc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [man_desc]}, f)
    return {
        "layers": [{k: ly[k] for k in ("name", "digest", "size", "tar_bytes")} for ly in layers],
        "blob_bytes": sum(ly["size"] for ly in layers) + cfg_desc["size"] + man_desc["size"],
        "tar_bytes": sum(ly["tar_bytes"] for ly in layers),
        "manifest_digest": man_desc["digest"],
    }


def _put_json(blobs: str, doc: dict[str, Any], media_type: str) -> dict[str, Any]:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    hexd = hashlib.sha256(raw).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(raw)
    return {"mediaType": media_type, "digest": f"sha256:{hexd}", "size": len(raw)}
