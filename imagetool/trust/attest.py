"""Attestations in cosign's format: an in-toto Statement (subject = the image's name and
sha256 digest, predicateType, predicate) in a DSSE envelope (payloadType
application/vnd.in-toto+json, signature over DSSE's pre-authentication encoding), stored as a
layer of type application/vnd.dsse.envelope.v1+json with the annotation `predicateType` in
one OCI manifest tagged sha256-<hex>.att, appended to like cosign's .sig manifest. The
predicate is embedded as the JSON given."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from imagetool.mediatypes import OCI_CONFIG
from imagetool.reference import Reference
from imagetool.registry.client import RegistryClient
from imagetool.trust import cosign, keys, remote
from imagetool.trust.errors import TrustError, VerifyError

ATT_SUFFIX = ".att"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
INTOTO_PAYLOAD = "application/vnd.in-toto+json"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
# cosign's short names for predicate types
ALIASES = {"custom": "https://cosign.sigstore.dev/attestation/v1",
           "slsaprovenance": "https://slsa.dev/provenance/v0.2",
           "slsaprovenance1": "https://slsa.dev/provenance/v1",
           "spdxjson": "https://spdx.dev/Document",
           "cyclonedx": "https://cyclonedx.org/bom",
           "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1"}


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def statement(name: str, digest: str, predicate_type: str, predicate: Any) -> dict[str, Any]:
    algo, _, hexd = digest.partition(":")
    return {"_type": STATEMENT_V01, "predicateType": predicate_type,
            "subject": [{"name": name, "digest": {algo: hexd}}], "predicate": predicate}


def envelope(key: Any, stmt: dict[str, Any]) -> bytes:
    body = json.dumps(stmt, separators=(",", ":")).encode()
    sig = keys.sign(key, pae(INTOTO_PAYLOAD, body))
    return json.dumps({"payloadType": INTOTO_PAYLOAD,
                       "payload": base64.b64encode(body).decode(),
                       "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]},
                      separators=(",", ":")).encode()


def predicate_type(text: str | None) -> str:
    t = ALIASES.get(text or "custom", text or "")
    if "://" not in t:
        raise TrustError(f"--type {text!r}: want a URI or one of {', '.join(ALIASES)}")
    return t


def attest(client: RegistryClient, ref: Reference, key: Any, predicate: bytes,
           type_: str | None) -> tuple[str, str]:
    """Sign and attach; returns (image digest, the .att reference)."""
    ptype = predicate_type(type_)
    try:
        pred = json.loads(predicate)
    except ValueError:
        raise TrustError("--predicate: not JSON") from None
    top = cosign.resolve(client, ref)
    env = envelope(key, statement(ref.name, top.digest, ptype, pred))
    return top.digest, attach(client, ref, top.digest, env, ptype)


def attach(client: RegistryClient, ref: Reference, digest: str, env: bytes, ptype: str) -> str:
    """Append a DSSE envelope layer to the .att manifest of `digest`."""
    layer = remote.push_blob(client, ref, env, DSSE_TYPE,
                             annotations={cosign.SIG_ANNOTATION: "", "predicateType": ptype})
    tag = remote.tag_for(digest, ATT_SUFFIX)
    old = remote.manifest_or_none(client, ref, tag)
    layers = [d for d in (old.data.get("layers", []) if old else [])
              if d.get("digest") != layer["digest"]]
    layers.append(layer)
    cfg = remote.push_blob(client, ref, cosign.signature_config(layers), OCI_CONFIG)
    remote.put_manifest(client, ref, remote.image_manifest(layers, config=cfg), tag)
    return f"{ref.name}:{tag}"


def open_envelope(raw: bytes, pub: Any, digest: str) -> dict[str, Any]:
    """Check an envelope's signature and subject; returns the statement."""
    try:
        env = json.loads(raw)
        body = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in env["signatures"]]
        ptype = env["payloadType"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise VerifyError("not a DSSE envelope (bad JSON or base64)") from None
    if ptype != INTOTO_PAYLOAD:
        raise VerifyError(f"payloadType {ptype!r} is not in-toto")
    errors = []
    for sig in sigs:
        try:
            keys.verify(pub, sig, pae(ptype, body))
            break
        except VerifyError as e:
            errors.append(str(e))
    else:
        raise VerifyError(errors[0] if errors else "envelope has no signatures")
    try:
        stmt = json.loads(body)
    except ValueError:
        raise VerifyError("statement is not JSON") from None
    algo, _, hexd = digest.partition(":")
    subjects = stmt.get("subject") if isinstance(stmt, dict) else None
    if not isinstance(subjects, list) or not any(
            isinstance(s, dict) and (s.get("digest") or {}).get(algo) == hexd for s in subjects):
        raise VerifyError(f"the statement's subject is not {digest}")
    return stmt


def verify(client: RegistryClient, ref: Reference, pub: Any,
           type_: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The statements attached to `ref` that `pub` signed (of `type_` when given)."""
    want = predicate_type(type_) if type_ else None
    top = cosign.resolve(client, ref)
    tag = remote.tag_for(top.digest, ATT_SUFFIX)
    m = remote.manifest_or_none(client, ref, tag)
    if m is None:
        raise VerifyError(f"{ref}: no attestations found ({ref.name}:{tag} does not exist)")
    good, why = [], []
    for i, d in enumerate(m.data.get("layers", [])):
        if d.get("mediaType") != DSSE_TYPE:
            continue
        try:
            stmt = open_envelope(remote.small_blob(client, ref, d), pub, top.digest)
        except TrustError as e:
            why.append(f"attestation {i}: {e}")
            continue
        if want and stmt.get("predicateType") != want:
            why.append(f"attestation {i}: type {stmt.get('predicateType')}")
            continue
        good.append(stmt)
    if not good:
        raise VerifyError(f"{ref}: no valid attestation ({'; '.join(why) or 'no layers'})")
    return top.digest, good
