"""Test images without the internet: OCI layouts written by hand (any media types, platforms,
compressions, foreign layers) or by umoci from a busybox rootfs, pushed to a test registry
by skopeo. Everything is deterministic, so digests are stable within a run."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from typing import Any

from imagetool import mediatypes as mt
from tests.rig import make_rootfs

REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A deterministic tar of regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


class Layout:
    """An OCI image layout we write by hand."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.index: dict[str, Any] = {"schemaVersion": 2, "manifests": []}
        self._save()

    def _save(self) -> None:
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(self.index, f)

    def blob(self, data: bytes) -> tuple[str, int]:
        d = sha256(data)
        with open(os.path.join(self.path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return d, len(data)

    def read(self, digest: str) -> bytes:
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "rb") as f:
            return f.read()

    def image(self, layers: list[tuple[bytes, str]], arch: str = "amd64", os_name: str = "linux",
              variant: str | None = None, docker: bool = False,
              foreign: dict[int, list[str]] | None = None, store_foreign: bool = True,
              extra_config: dict | None = None,
              diff_ids: list[str] | None = None) -> dict[str, Any]:
        """Layers are (uncompressed tar, compression). Returns the manifest's descriptor."""
        layer_descs, computed = [], []
        for i, (raw, kind) in enumerate(layers):
            blob = compress(raw, kind)
            computed.append(sha256(raw))
            if docker:
                media = {"gzip": mt.DOCKER_LAYER_GZIP}[kind]
            else:
                media = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD,
                         "none": mt.OCI_LAYER}[kind]
            desc: dict[str, Any] = {"mediaType": media, "digest": sha256(blob), "size": len(blob)}
            if foreign and i in foreign:
                desc["mediaType"] = mt.DOCKER_LAYER_FOREIGN if docker else mt.OCI_LAYER_ND_GZIP
                desc["urls"] = foreign[i]
                if store_foreign:
                    self.blob(blob)
            else:
                self.blob(blob)
            layer_descs.append(desc)
        config = {"architecture": arch, "os": os_name,
                  "config": {"Cmd": ["/bin/sh"], **(extra_config or {})},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids or computed}}
        if variant:
            config["variant"] = variant
        cfg_bytes = json.dumps(config, sort_keys=True).encode()
        cd, cs = self.blob(cfg_bytes)
        manifest = {"schemaVersion": 2,
                    "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                               "digest": cd, "size": cs},
                    "layers": layer_descs}
        raw = json.dumps(manifest, indent=3).encode()
        md, ms = self.blob(raw)
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant
        return {"mediaType": manifest["mediaType"], "digest": md, "size": ms,
                "platform": platform}

    def attestation(self, subject: dict[str, Any]) -> dict[str, Any]:
        """A BuildKit-style attestation manifest for `subject`, as an index entry."""
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                                "subject": [{"digest": {"sha256": subject["digest"][7:]}}]})
        sd, ss = self.blob(statement.encode())
        config = json.dumps({"architecture": "unknown", "os": "unknown", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [sd]}}).encode()
        cd, cs = self.blob(config)
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": cd, "size": cs},
                    "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": sd,
                                "size": ss}]}
        md, ms = self.blob(json.dumps(manifest).encode())
        return {"mediaType": mt.OCI_MANIFEST, "digest": md, "size": ms,
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {"vnd.docker.reference.digest": subject["digest"],
                                "vnd.docker.reference.type": "attestation-manifest"}}

    def index_of(self, manifests: list[dict[str, Any]], docker: bool = False) -> dict[str, Any]:
        idx = {"schemaVersion": 2, "mediaType": mt.DOCKER_LIST if docker else mt.OCI_INDEX,
               "manifests": manifests}
        raw = json.dumps(idx, indent=3).encode()
        d, s = self.blob(raw)
        return {"mediaType": idx["mediaType"], "digest": d, "size": s}

    def tag(self, desc: dict[str, Any], name: str) -> dict[str, Any]:
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {REF_NAME: name}
        self.index["manifests"] = [m for m in self.index["manifests"]
                                   if m.get("annotations", {}).get(REF_NAME) != name]
        self.index["manifests"].append(entry)
        self._save()
        return desc


def busybox_layout(path: str, workdir: str) -> str:
    """An OCI layout `path:latest` holding a busybox rootfs, made by umoci like peers.md says."""
    rootfs = make_rootfs(os.path.join(workdir, "rootfs"))
    layer = os.path.join(workdir, "layer.tar")
    with tarfile.open(layer, "w") as tf:
        tf.add(rootfs, arcname=".")
    for cmd in (["umoci", "init", "--layout", path],
                ["umoci", "new", "--image", f"{path}:latest"],
                ["umoci", "raw", "add-layer", "--image", f"{path}:latest", layer],
                ["umoci", "config", "--image", f"{path}:latest", "--config.cmd", "/bin/sh"]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return path


def skopeo_copy(src: str, dest: str, *args: str, timeout: int = 120) -> None:
    p = subprocess.run(["skopeo", "copy", "--quiet", *args, src, dest], capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"skopeo copy {src} {dest} failed: {p.stderr.strip()}")
