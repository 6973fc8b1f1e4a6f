"""cosign's signature format (specs/SIGNATURE_SPEC.md of sigstore/cosign): the simple signing
payload as a blob of type application/vnd.dev.cosign.simplesigning.v1+json, its base64 ECDSA
signature in the layer annotation dev.cosignproject.cosign/signature, one layer per signature
in one OCI manifest tagged sha256-<hex>.sig in the image's repository (a new signature is
appended; an identical one is not added twice). With `referrers=True` the signature is also
stored as an OCI 1.1 referrer of the image (artifactType below)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from imagetool.mediatypes import OCI_CONFIG
from imagetool.reference import Reference
from imagetool.registry.client import RegistryClient
from imagetool.registry.manifests import Manifest
from imagetool.trust import keys, payload, remote
from imagetool.trust.errors import TrustError, VerifyError

SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
SIG_SUFFIX = ".sig"
SIG_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Verified:
    """One signature that verified: the layer's payload, parsed and raw."""

    payload: payload.Payload
    raw: bytes
    signature: str


def signature_config(layers: list[dict[str, Any]]) -> bytes:
    """An image config whose diff_ids are the (uncompressed) payload layers, as cosign's."""
    import json
    doc = {"architecture": "", "created": ZERO_TIME,
           "history": [{"created": ZERO_TIME} for _ in layers], "os": "",
           "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
           "config": {}}
    return json.dumps(doc, separators=(",", ":")).encode()


def resolve(client: RegistryClient, ref: Reference) -> Manifest:
    """The manifest or index the reference names (its digest is what gets signed)."""
    return remote.manifest(client, ref)


def sign(client: RegistryClient, ref: Reference, key: Any, *, referrers: bool = False,
         annotations: dict[str, str] | None = None) -> tuple[str, str]:
    """Sign what `ref` names; returns (image digest, where the signature went)."""
    top = resolve(client, ref)
    body = payload.make(ref.name, top.digest, payload.COSIGN_TYPE, optional=annotations)
    sig = base64.b64encode(keys.sign(key, body)).decode()
    layer = remote.push_blob(client, ref, body, payload.MEDIA_TYPE,
                             annotations={SIG_ANNOTATION: sig})
    if referrers:
        from imagetool.trust import artifacts
        doc = remote.image_manifest([layer], artifact_type=SIG_ARTIFACT_TYPE,
                                    subject=top.descriptor())
        m = artifacts.push_referrer(client, ref, doc, top)
        return top.digest, f"{ref.name}@{m.digest}"
    tag = remote.tag_for(top.digest, SIG_SUFFIX)
    old = remote.manifest_or_none(client, ref, tag)
    layers = list(old.data.get("layers", [])) if old else []
    if any(d.get("digest") == layer["digest"]
           and (d.get("annotations") or {}).get(SIG_ANNOTATION) == sig for d in layers):
        return top.digest, f"{ref.name}:{tag}"
    layers.append(layer)
    cfg = remote.push_blob(client, ref, signature_config(layers), OCI_CONFIG)
    remote.put_manifest(client, ref, remote.image_manifest(layers, config=cfg), tag)
    return top.digest, f"{ref.name}:{tag}"


def signature_manifests(client: RegistryClient, ref: Reference, digest: str) -> list[Manifest]:
    """The .sig manifest and any signature referrers of `digest`."""
    out = []
    m = remote.manifest_or_none(client, ref, remote.tag_for(digest, SIG_SUFFIX))
    if m is not None:
        out.append(m)
    from imagetool.trust import artifacts
    for desc in artifacts.referrers(client, ref, digest, SIG_ARTIFACT_TYPE):
        out.append(remote.manifest(client, ref, desc["digest"]))
    return out


def check_layer(client: RegistryClient, ref: Reference, desc: dict[str, Any], pub: Any,
                digest: str) -> Verified:
    """One signature layer against `pub` and the image `digest`; VerifyError says why not."""
    if desc.get("mediaType") != payload.MEDIA_TYPE:
        raise VerifyError(f"layer type {desc.get('mediaType')!r} is not a signature")
    b64 = (desc.get("annotations") or {}).get(SIG_ANNOTATION)
    if not isinstance(b64, str) or not b64:
        raise VerifyError(f"no {SIG_ANNOTATION} annotation")
    try:
        sig = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise VerifyError(f"the {SIG_ANNOTATION} annotation is not base64") from None
    raw = remote.small_blob(client, ref, desc)
    keys.verify(pub, sig, raw)
    p = payload.parse(raw, "signature", payload.COSIGN_TYPE)
    if p.manifest_digest != digest:
        raise VerifyError(f"the signed payload is for {p.manifest_digest}, not {digest}")
    return Verified(p, raw, b64)


def verify(client: RegistryClient, ref: Reference, pub: Any,
           identity: str | None = None) -> tuple[str, list[Verified]]:
    """Every signature of `ref` made by `pub` for its digest (at least one, else VerifyError).
    `identity` (default: the reference's repository) must equal the payload's
    docker-reference, compared without tag or digest."""
    top = resolve(client, ref)
    sigs = signature_manifests(client, ref, top.digest)
    if not sigs:
        raise VerifyError(f"{ref}: no signatures found ({ref.name}:"
                          f"{remote.tag_for(top.digest, SIG_SUFFIX)} does not exist)")
    want = _repo_of(identity) if identity else ref.name
    good: list[Verified] = []
    why: list[str] = []
    for m in sigs:
        for i, desc in enumerate(m.data.get("layers", [])):
            try:
                v = check_layer(client, ref, desc, pub, top.digest)
            except TrustError as e:
                why.append(f"signature {i}: {e}")
                continue
            if _repo_of(v.payload.docker_reference) != want:
                why.append(f"signature {i}: signed for {v.payload.docker_reference}, not {want}")
                continue
            good.append(v)
    if not good:
        raise VerifyError(f"{ref}: no valid signature ({'; '.join(why) or 'no layers'})")
    return top.digest, good


def _repo_of(text: str) -> str:
    """registry/repository of a reference text (tag and digest dropped)."""
    try:
        r = remote.parse_ref(text, "identity")
    except TrustError:
        return text
    return r.name
