"""OCI 1.1 artifacts: manifests with `artifactType` and `subject`, found through the referrers
API (GET /v2/<name>/referrers/<digest>) where the registry has it, else through the
referrers tag schema: an index tagged sha256-<hex> listing the subject's referrers, which the
pusher keeps up to date (distribution-spec v1.1, "Referrers Tag Schema"). Debian's
docker-registry 2.8 has no referrers API, so there the tag schema is what is used."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from imagetool.mediatypes import OCI_INDEX, OCI_MANIFEST
from imagetool.reference import Reference
from imagetool.registry.client import RegistryClient
from imagetool.registry.manifests import Manifest
from imagetool.trust import remote
from imagetool.trust.errors import TrustError

TITLE = "org.opencontainers.image.title"
DEFAULT_FILE_TYPE = "application/vnd.oci.image.layer.v1.tar"


def _api(client: RegistryClient, ref: Reference, digest: str,
         artifact_type: str | None) -> list[dict[str, Any]] | None:
    """The referrers API's answer, or None when the registry has no such API."""
    path = f"referrers/{digest}"
    if artifact_type:
        from urllib.parse import quote
        path += f"?artifactType={quote(artifact_type, safe='')}"
    resp = client.request("GET", ref.repository, path, headers={"Accept": OCI_INDEX})
    with resp:
        if resp.status_code in (404, 400, 405):
            return None
        client.check(resp, f"{ref.name}: referrers of {digest}")
        try:
            doc = json.loads(resp.content)
        except ValueError:
            return None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        return None
    return doc["manifests"]


def referrers(client: RegistryClient, ref: Reference, digest: str,
              artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Descriptors of the manifests whose subject is `digest` (optionally of one type)."""
    found = _api(client, ref, digest, artifact_type)
    if found is None:
        idx = remote.manifest_or_none(client, ref, remote.tag_for(digest))
        found = idx.children() if idx is not None and idx.is_index else []
    return [d for d in found if isinstance(d, dict) and isinstance(d.get("digest"), str)
            and (artifact_type is None or d.get("artifactType") == artifact_type)]


def _entry(m: Manifest) -> dict[str, Any]:
    desc = m.descriptor()
    at = m.data.get("artifactType") or (m.data.get("config") or {}).get("mediaType")
    if at:
        desc["artifactType"] = at
    if m.data.get("annotations"):
        desc["annotations"] = m.data["annotations"]
    return desc


def push_referrer(client: RegistryClient, ref: Reference, doc: dict[str, Any],
                  subject: Manifest, tag: str | None = None) -> Manifest:
    """PUT an artifact manifest whose subject is `subject` (by digest, or under `tag`), and
    add it to the referrers tag index when the registry has no referrers API."""
    m = remote.put_manifest(client, ref, doc, tag)
    if _api(client, ref, subject.digest, None) is not None:
        return m  # the registry indexes `subject` itself
    idx_tag = remote.tag_for(subject.digest)
    old = remote.manifest_or_none(client, ref, idx_tag)
    entries = [d for d in (old.children() if old and old.is_index else [])
               if d.get("digest") != m.digest]
    entries.append(_entry(m))
    remote.put_manifest(client, ref, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": entries}, idx_tag)
    return m


def parse_file_arg(text: str) -> tuple[str, str]:
    """FILE or FILE:MEDIATYPE (as oras takes them)."""
    path, sep, mt = text.rpartition(":")
    if sep and "/" in mt and os.path.exists(path):
        return path, mt
    return text, DEFAULT_FILE_TYPE


def push(client: RegistryClient, ref: Reference, files: list[str], artifact_type: str,
         subject: Reference | None = None,
         annotations: dict[str, str] | None = None) -> Manifest:
    """Push `files` as one artifact under `ref`; with `subject`, as its referrer."""
    if not artifact_type or "/" not in artifact_type:
        raise TrustError(f"--artifact-type {artifact_type!r}: want a media type (type/subtype)")
    parsed = [parse_file_arg(f) for f in files]
    for path, _ in parsed:
        if not os.path.isfile(path):
            raise TrustError(f"FILE {path}: not a regular file")
    titles = [os.path.basename(p) for p, _ in parsed]
    if len(set(titles)) != len(titles):
        raise TrustError("FILE: two files have the same name")
    sub: Manifest | None = None
    if subject is not None:
        if subject.name != ref.name:
            raise TrustError(f"--subject {subject}: must be in {ref.name} (a referrer lives in "
                             "its subject's repository)")
        sub = remote.manifest(client, subject)
    layers = [remote.push_blob(client, ref, None, mt, path=p, annotations={TITLE: t})
              for (p, mt), t in zip(parsed, titles, strict=True)]
    doc = remote.image_manifest(layers, artifact_type=artifact_type,
                                subject=sub.descriptor() if sub else None,
                                annotations=annotations)
    tag = ref.tag if ref.digest is None else None
    if sub is not None:
        return push_referrer(client, ref, doc, sub, tag)
    return remote.put_manifest(client, ref, doc, tag)


def _safe_name(name: str, digest: str) -> str:
    base = os.path.basename(name or "")
    if not base or base in (".", "..") or base != name:
        return digest.split(":", 1)[-1]
    return base


def pull(client: RegistryClient, ref: Reference, outdir: str) -> list[str]:
    """Every layer of the artifact into `outdir` (named by its title annotation); all or
    nothing: files are fetched into a temp dir and moved in at the end."""
    m = remote.manifest(client, ref)
    if m.is_index:
        raise TrustError(f"{ref}: an index, not an artifact manifest")
    os.makedirs(outdir, exist_ok=True)
    layers = m.data.get("layers", [])
    names = [_safe_name((d.get("annotations") or {}).get(TITLE, ""), d["digest"])
             for d in layers]
    if len(set(names)) != len(names):
        raise TrustError(f"{ref}: two layers have the same title")
    tmp = tempfile.mkdtemp(prefix=".artifact-", dir=outdir)
    try:
        for d, name in zip(layers, names, strict=True):
            remote.blob_to_file(client, ref, d, os.path.join(tmp, name))
        out = []
        for name in names:
            dest = os.path.join(outdir, name)
            os.replace(os.path.join(tmp, name), dest)
            out.append(dest)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ls(client: RegistryClient, ref: Reference,
       artifact_type: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(subject digest, its referrers' descriptors)."""
    top = remote.manifest(client, ref)
    return top.digest, referrers(client, ref, top.digest, artifact_type)


__all__ = ["OCI_MANIFEST", "push", "pull", "ls", "referrers", "push_referrer"]
