"""The registry operations trust needs, on imagetool's own client (imagetool/registry): a
client for a reference, manifests by tag or digest (verified), small blobs read whole and
checked, blobs streamed to a file and checked, blobs and manifests pushed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

from imagetool import digest
from imagetool.atomicfile import atomic_file
from imagetool.mediatypes import OCI_EMPTY, OCI_MANIFEST
from imagetool.reference import Reference, parse
from imagetool.registry.client import RegistryClient
from imagetool.registry.config import RegistryConfig
from imagetool.registry.errors import DigestMismatch, NotFoundError
from imagetool.registry.manifests import (
    Manifest,
    compute_digest,
    fetch,
    parse_manifest,
    put,
    verify_bytes,
)
from imagetool.registry.upload import upload_blob
from imagetool.trust.errors import TrustError

MAX_SMALL = 16 << 20  # signatures, payloads, envelopes and configs are far below this
EMPTY_JSON = b"{}"
EMPTY_DESC = {"mediaType": OCI_EMPTY, "digest": compute_digest(EMPTY_JSON), "size": 2}


def client_for(ref: Reference, config: RegistryConfig | None = None,
               docker_config: str | None = None) -> RegistryClient:
    return RegistryClient(ref.registry, config=config or RegistryConfig.load(),
                          docker_config=docker_config)


def parse_ref(text: str, flag: str = "IMAGE") -> Reference:
    from imagetool.reference import ReferenceError
    try:
        return parse(text)
    except ReferenceError as e:
        raise TrustError(f"{flag} {text!r}: {e}") from None


def manifest(client: RegistryClient, ref: Reference, target: str | None = None) -> Manifest:
    """The manifest or index under `target` (default: the reference's digest or tag)."""
    t = target or ref.target
    return fetch(client, ref.repository, t, f"{ref.name}:{t}" if ":" not in t
                 else f"{ref.name}@{t}")


def manifest_or_none(client: RegistryClient, ref: Reference, target: str) -> Manifest | None:
    try:
        return manifest(client, ref, target)
    except NotFoundError:
        return None


def small_blob(client: RegistryClient, ref: Reference, desc: dict[str, Any]) -> bytes:
    """A whole blob (at most MAX_SMALL bytes), checked against its descriptor."""
    size = desc.get("size")
    if not isinstance(size, int) or size < 0 or size > MAX_SMALL:
        raise TrustError(f"{ref.name}: blob {desc.get('digest')} has size {size!r} "
                         f"(limit {MAX_SMALL})")
    if desc.get("digest") == EMPTY_DESC["digest"]:
        return EMPTY_JSON
    what = f"{ref.name}: blob {desc['digest']}"
    resp = client.request("GET", ref.repository, f"blobs/{desc['digest']}", stream=True)
    client.check(resp, what)
    parts: list[bytes] = []
    got = 0
    with resp:
        while got <= size and (chunk := resp.read(size + 1 - got)):
            parts.append(chunk)
            got += len(chunk)
    data = b"".join(parts)
    verify_bytes(data, desc["digest"], size, what)
    return data


def blob_to_file(client: RegistryClient, ref: Reference, desc: dict[str, Any],
                 path: str) -> None:
    """Stream a blob into `path` (written under a temp name, renamed once it checks out)."""
    what = f"{ref.name}: blob {desc['digest']}"
    algo, _, want = desc["digest"].partition(":")
    if algo not in ("sha256", "sha512"):
        raise TrustError(f"{what}: unsupported digest algorithm")
    resp = client.request("GET", ref.repository, f"blobs/{desc['digest']}", stream=True)
    client.check(resp, what)
    h, n = hashlib.new(algo), 0
    with resp, atomic_file(path, mode=0o600, durable=False) as f:
        while chunk := resp.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
            f.write(chunk)
        if h.hexdigest() != want or n != desc.get("size", n):
            raise DigestMismatch(f"{what}: content does not match its descriptor")


def push_blob(client: RegistryClient, ref: Reference, data: bytes | None, media_type: str,
              path: str | None = None, **extra: Any) -> dict[str, Any]:
    """Upload bytes (or the file at `path`); returns its descriptor (+ `extra` fields)."""
    tmp = None
    try:
        if path is None:
            assert data is not None
            fd, tmp = tempfile.mkstemp(prefix="imagetool-blob-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            path = tmp
        blob_digest, size = digest.of_file(path)
        desc = {"mediaType": media_type, "digest": blob_digest, "size": size, **extra}
        upload_blob(client, ref.repository, desc, path, what=ref.name)
        return desc
    finally:
        if tmp:
            os.unlink(tmp)


def put_manifest(client: RegistryClient, ref: Reference, doc: dict[str, Any],
                 target: str | None = None) -> Manifest:
    """PUT `doc` under `target` (a tag) or its own digest; returns what was sent."""
    if (doc.get("config") or {}).get("digest") == EMPTY_DESC["digest"]:
        push_blob(client, ref, EMPTY_JSON, OCI_EMPTY)  # a HEAD when it is there already
    raw = json.dumps(doc, separators=(",", ":")).encode()
    m = parse_manifest(raw, doc.get("mediaType"), compute_digest(raw), ref.name)
    put(client, ref.repository, target or m.digest, m, f"{ref.name}:{target or m.digest}")
    return m


def image_manifest(layers: list[dict[str, Any]], config: dict[str, Any] | None = None,
                   artifact_type: str | None = None, subject: dict[str, Any] | None = None,
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI image manifest document (artifact fields only when given)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config or dict(EMPTY_DESC)
    doc["layers"] = layers
    if subject:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return doc


def tag_for(digest: str, suffix: str = "") -> str:
    """cosign's tag for a digest: sha256:abc -> sha256-abc<suffix>."""
    return digest.replace(":", "-", 1) + suffix
