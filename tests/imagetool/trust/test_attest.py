"""Attestations in cosign's format: `imagetool attest` writes an in-toto statement in a DSSE
envelope under sha256-<hex>.att (checked here by hand: PAE, ECDSA, the layer's media type and
annotations); `verify-attestation` accepts it, filters by predicate type, and refuses another
key, a statement for another digest, and an envelope that is not base64."""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SLSA02 = "https://slsa.dev/provenance/v0.2"
DSSE = "application/vnd.dsse.envelope.v1+json"


def pae(t: bytes, body: bytes) -> bytes:
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + \
        b" " + body


def test_attest_and_verify(it, pushed, keypair, passfile, tmp_path):
    priv, pub = keypair
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"builder": {"id": "https://example.test/ci"}}))
    it.run("attest", "--key", priv, "--passphrase-file", passfile, "--predicate", str(pred),
           "--type", "slsaprovenance", pushed.ref)
    tag = pushed.digest().replace(":", "-") + ".att"
    _, man = pushed.raw.manifest(pushed.repo, tag)
    (layer,) = man["layers"]
    assert layer["mediaType"] == DSSE
    assert layer["annotations"] == {"dev.cosignproject.cosign/signature": "",
                                    "predicateType": SLSA02}
    env = json.loads(pushed.raw.blob(pushed.repo, layer["digest"]))
    assert env["payloadType"] == "application/vnd.in-toto+json"
    body = base64.b64decode(env["payload"])
    with open(pub, "rb") as f:
        serialization.load_pem_public_key(f.read()).verify(
            base64.b64decode(env["signatures"][0]["sig"]),
            pae(b"application/vnd.in-toto+json", body), ec.ECDSA(hashes.SHA256()))
    stmt = json.loads(body)
    assert stmt["_type"] == "https://in-toto.io/Statement/v0.1"
    assert stmt["predicateType"] == SLSA02
    assert stmt["subject"] == [{"name": f"{pushed.host}/{pushed.repo}",
                                "digest": {"sha256": pushed.digest()[7:]}}]
    assert stmt["predicate"] == {"builder": {"id": "https://example.test/ci"}}
    out = it.run("verify-attestation", "--key", pub, "--type", "slsaprovenance",
                 pushed.ref).stdout.decode().splitlines()
    assert [json.loads(ln) for ln in out] == [stmt]
    assert "type" in it.fails("verify-attestation", "--key", pub, "--type", "cyclonedx",
                              pushed.ref)


def test_attestation_refusals(it, pushed, keypair, passfile, tmp_path):
    priv, pub = keypair
    assert "no attestations found" in it.fails("verify-attestation", "--key", pub, pushed.ref)
    pred = tmp_path / "pred.json"
    pred.write_text("{not json")
    assert "--predicate: not JSON" in it.fails("attest", "--key", priv, "--passphrase-file",
                                               passfile, "--predicate", str(pred), pushed.ref)
    assert pushed.digest().replace(":", "-") + ".att" not in pushed.raw.tags(pushed.repo)
    # a hand-made envelope: another key, then a statement for another digest, then bad base64
    key = ec.generate_private_key(ec.SECP256R1())
    other_pub = tmp_path / "o.pub"
    other_pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def put(env: bytes) -> None:
        d = pushed.raw.put_blob(pushed.repo, env)
        c = pushed.raw.put_blob(pushed.repo, b"{}")
        pushed.raw.put_manifest(pushed.repo, pushed.digest().replace(":", "-") + ".att", {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c,
                       "size": 2},
            "layers": [{"mediaType": DSSE, "digest": d, "size": len(env)}]})

    def envelope(digest_hex: str) -> bytes:
        body = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                           "predicateType": SLSA02, "predicate": {},
                           "subject": [{"name": "x", "digest": {"sha256": digest_hex}}]}).encode()
        sig = key.sign(pae(b"application/vnd.in-toto+json", body), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(body).decode(),
                           "signatures": [{"sig": base64.b64encode(sig).decode()}]}).encode()

    put(envelope(pushed.digest()[7:]))
    it.run("verify-attestation", "--key", str(other_pub), pushed.ref)
    assert "does not match the key" in it.fails("verify-attestation", "--key", pub, pushed.ref)
    put(envelope("0" * 64))
    assert "subject is not" in it.fails("verify-attestation", "--key", str(other_pub),
                                        pushed.ref)
    put(b'{"payloadType": "application/vnd.in-toto+json", "payload": "%%%", "signatures": []}')
    assert "not a DSSE envelope" in it.fails("verify-attestation", "--key", str(other_pub),
                                             pushed.ref)
    assert not os.path.exists(it.root)
