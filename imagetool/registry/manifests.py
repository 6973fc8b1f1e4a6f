"""Manifests on the wire: the four media types we accept (Docker schema2 manifest and list,
OCI manifest and index), fetched with their raw bytes kept exactly as served and checked
against the digest we asked for, the registry's Docker-Content-Digest, or the descriptor."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from imagetool import digest as _digest
from imagetool.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from imagetool.registry.client import RegistryClient
from imagetool.registry.errors import DigestMismatch, ManifestError

SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 * 1024 * 1024  # what the distribution spec lets registries refuse beyond


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in ("sha256", "sha512"):
        raise ManifestError(f"unsupported digest algorithm {algorithm!r}")
    return _digest.of_bytes(data, algorithm)


def verify_bytes(data: bytes, digest: str, size: int | None, what: str) -> None:
    algorithm = digest.split(":", 1)[0]
    got = compute_digest(data, algorithm)
    if got != digest:
        raise DigestMismatch(f"{what}: digest mismatch (expected {digest}, got {got})")
    if size is not None and size != len(data):
        raise DigestMismatch(f"{what}: size mismatch (expected {size}, got {len(data)})")


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as served, with its digest and parsed JSON."""

    media_type: str
    raw: bytes
    digest: str
    data: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw),
                **extra}

    def blobs(self) -> list[dict[str, Any]]:
        """config + layers of an image manifest."""
        if self.is_index:
            return []
        return [self.data["config"], *self.data.get("layers", [])]

    def children(self) -> list[dict[str, Any]]:
        return list(self.data.get("manifests", [])) if self.is_index else []


def parse_manifest(raw: bytes, content_type: str | None, digest: str, what: str) -> Manifest:
    """Parse and check the shape; the media type comes from the JSON, else the header."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ManifestError(f"{what}: manifest is not JSON") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{what}: manifest is not a JSON object")
    ctype = (content_type or "").split(";", 1)[0].strip()
    mt = data.get("mediaType") or ctype
    if mt in SCHEMA1 or data.get("schemaVersion") == 1:
        raise ManifestError(f"{what}: Docker schema1 manifests are not supported")
    if mt not in INDEX_TYPES + MANIFEST_TYPES:
        if "manifests" in data:
            mt = OCI_INDEX
        elif "config" in data and "layers" in data:
            mt = OCI_MANIFEST
        else:
            raise ManifestError(f"{what}: unsupported manifest media type {mt!r}")
    if mt in INDEX_TYPES:
        if not isinstance(data.get("manifests"), list):
            raise ManifestError(f"{what}: index without a 'manifests' list")
        descs = data["manifests"]
    else:
        if not isinstance(data.get("config"), dict) or not isinstance(data.get("layers"), list):
            raise ManifestError(f"{what}: manifest without 'config' and 'layers'")
        descs = [data["config"], *data["layers"]]
    for i, d in enumerate(descs):
        if not (isinstance(d, dict) and isinstance(d.get("digest"), str)
                and isinstance(d.get("size"), int) and d["size"] >= 0):
            raise ManifestError(f"{what}: descriptor {i} lacks a digest or size")
    return Manifest(mt, raw, digest, data)


def fetch(client: RegistryClient, repository: str, target: str, what: str,
          expected: dict[str, Any] | None = None) -> Manifest:
    """GET a manifest by tag or digest; verified before anything else looks at it."""
    resp = client.request("GET", repository, f"manifests/{target}", headers={"Accept": ACCEPT},
                          stream=True)
    client.check(resp, what)
    with resp:
        raw = resp.read(MAX_MANIFEST + 1)
    if len(raw) > MAX_MANIFEST:
        raise ManifestError(f"{what}: manifest larger than {MAX_MANIFEST} bytes")
    if expected is not None:
        want, size = expected["digest"], expected.get("size")
    elif ":" in target:
        want, size = target, None
    else:
        want, size = resp.headers.get("Docker-Content-Digest") or "", None
    if want:
        verify_bytes(raw, want, size, what)
        digest = want if want.startswith("sha256:") else compute_digest(raw)
    else:
        digest = compute_digest(raw)
    return parse_manifest(raw, resp.headers.get("Content-Type"), digest, what)


def head(client: RegistryClient, repository: str, target: str,
         actions: tuple[str, ...] = ("pull",)) -> str | None:
    """The digest the registry has under `target`, or None when it has nothing there."""
    resp = client.request("HEAD", repository, f"manifests/{target}", actions=actions,
                          headers={"Accept": ACCEPT})
    with resp:
        if resp.status_code == 404:
            return None
        client.check(resp, f"{client.display}/{repository}:{target}")
        return resp.headers.get("Docker-Content-Digest")


def put(client: RegistryClient, repository: str, target: str, manifest: Manifest,
        what: str, extra_scopes: tuple[str, ...] = ()) -> str:
    """PUT a manifest under a tag or its digest with its own media type; returns the digest."""
    resp = client.request("PUT", repository, f"manifests/{target}", actions=("pull", "push"),
                          extra_scopes=extra_scopes, body=manifest.raw,
                          headers={"Content-Type": manifest.media_type})
    client.check(resp, what, ok=(200, 201, 202))
    with resp:
        got = resp.headers.get("Docker-Content-Digest")
    if got and got != manifest.digest:
        raise DigestMismatch(f"{what}: registry stored {got}, we sent {manifest.digest}")
    return manifest.digest
