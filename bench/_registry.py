"""Helpers for the registry benchmark: a ~300 MB, five-layer OCI image built here without the
internet (gzip layers, as registries usually serve them). The throw-away docker-registry it
runs against is conformance/engines/registry.py's LocalRegistry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import stat
import tarfile
import tempfile
from typing import Any

from conformance.engines.registry import LocalRegistry, free_port, tree_bytes

__all__ = ["LocalRegistry", "build_layout", "free_port", "tree_bytes"]

SEED = 20240607
GZIP_LEVEL = 6  # what `gzip` and Go's compress/gzip default to (DefaultCompression)
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


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
