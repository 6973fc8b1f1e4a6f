"""A registry client for tests made of urllib and nothing of imagetool: what the tests use to
build signatures by hand and to read back what imagetool wrote, independently of it."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

ACCEPT = ", ".join(("application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Raw:
    """Plain-HTTP distribution API calls on `host` (a test registry without auth)."""

    def __init__(self, host: str) -> None:
        self.base = f"http://{host}/v2"

    def _open(self, req: urllib.request.Request) -> Any:
        return urllib.request.urlopen(req, timeout=30)

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        req = urllib.request.Request(f"{self.base}/{repo}/blobs/uploads/", method="POST",
                                     data=b"")
        with self._open(req) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = self.base[:-3] + loc
        sep = "&" if "?" in loc else "?"
        req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        with self._open(req):
            pass
        return digest

    def put_manifest(self, repo: str, ref: str, doc: dict[str, Any]) -> str:
        raw = json.dumps(doc).encode()
        req = urllib.request.Request(f"{self.base}/{repo}/manifests/{ref}", method="PUT",
                                     data=raw, headers={"Content-Type": doc["mediaType"]})
        with self._open(req):
            pass
        return sha256(raw)

    def manifest(self, repo: str, ref: str) -> tuple[bytes, dict[str, Any]] | None:
        req = urllib.request.Request(f"{self.base}/{repo}/manifests/{ref}",
                                     headers={"Accept": ACCEPT})
        try:
            with self._open(req) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return raw, json.loads(raw)

    def blob(self, repo: str, digest: str) -> bytes:
        with self._open(urllib.request.Request(f"{self.base}/{repo}/blobs/{digest}")) as r:
            data = r.read()
        assert sha256(data) == digest
        return data

    def tags(self, repo: str) -> list[str]:
        try:
            with self._open(urllib.request.Request(f"{self.base}/{repo}/tags/list")) as r:
                return sorted(json.loads(r.read()).get("tags") or [])
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
