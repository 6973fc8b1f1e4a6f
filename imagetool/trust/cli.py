"""The trust verbs of imagetool's command line: key generate, sign, verify, artifact
push|pull|ls, attest, verify-attestation. Each imports its module when called; errors are
TrustError (one line, exit 1) or the registry's own errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from imagetool.trust.errors import TrustError


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TrustError(f"{flag} {path}: {e.strerror}") from None


def _private_key(args: argparse.Namespace) -> Any:
    from imagetool.trust import keys
    data = _read(args.key, "--key")
    return keys.load_private(data, keys.read_passphrase(args.passphrase_file), args.key)


def _public_key(path: str) -> Any:
    from imagetool.trust import keys
    return keys.load_public(_read(path, "--key"), path)


def _kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not k or not eq:
            raise TrustError(f"{flag} {item!r}: want KEY=VALUE")
        out[k] = v
    return out


def _client(ref: Any) -> Any:
    from imagetool.trust import remote
    return remote.client_for(ref)


def cmd_key_generate(args: argparse.Namespace) -> int:
    from imagetool.atomicfile import atomic_file
    from imagetool.trust import keys
    priv, pub = f"{args.output_prefix}.key", f"{args.output_prefix}.pub"
    for p in (priv, pub):
        if os.path.exists(p) and not args.force:
            raise TrustError(f"{p} exists (use --force to overwrite)")
    pair = keys.generate(keys.read_passphrase(args.passphrase_file, confirm=True))
    with atomic_file(priv, mode=0o600) as f:
        f.write(pair.private_pem)
    with atomic_file(pub) as f:
        f.write(pair.public_pem)
    print(f"Private key written to {priv}\nPublic key written to {pub}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from imagetool.trust import cosign, remote
    if bool(args.key) == bool(args.sign_by):
        raise TrustError("give exactly one of --key (cosign) and --sign-by (GPG)")
    ref = remote.parse_ref(args.image)
    if args.sign_by:
        from imagetool.trust import simple
        with _client(ref) as client:
            digest, where = simple.sign(client, ref, args.sign_by, args.registries_d,
                                        args.passphrase_file)
        print(f"Stored GPG signature for {ref}@{digest} at {where}", file=sys.stderr)
        return 0
    key = _private_key(args)
    with _client(ref) as client:
        digest, where = cosign.sign(client, ref, key, referrers=args.referrers,
                                    annotations=_kv(args.annotation, "-a") or None)
    print(f"Pushing signature for {ref.name}@{digest} to {where}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from imagetool.trust import cosign, remote
    if bool(args.key) == bool(args.signature_policy):
        raise TrustError("give exactly one of --key and --signature-policy")
    ref = remote.parse_ref(args.image)
    if args.signature_policy:
        from imagetool.trust import policy
        pol = policy.load(args.signature_policy)
        with _client(ref) as client:
            top = remote.manifest(client, ref)
            what = policy.check(pol, ref, top.digest, client, args.registries_d)
        print(f"{ref}@{top.digest}: accepted by {pol.path} ({what})")
        return 0
    pub = _public_key(args.key)
    with _client(ref) as client:
        digest, good = cosign.verify(client, ref, pub, identity=args.identity)
    print(f"Verification for {ref.name}@{digest} -- {len(good)} signature(s) verified "
          "against the key; the claims were validated", file=sys.stderr)
    print(json.dumps([json.loads(v.raw) for v in good]))
    return 0


def cmd_artifact_push(args: argparse.Namespace) -> int:
    from imagetool.trust import artifacts, remote
    ref = remote.parse_ref(args.ref, "REF")
    subject = remote.parse_ref(args.subject, "--subject") if args.subject else None
    with _client(ref) as client:
        m = artifacts.push(client, ref, args.files, args.artifact_type, subject,
                           _kv(args.annotation, "--annotation") or None)
    print(m.digest)
    return 0


def cmd_artifact_pull(args: argparse.Namespace) -> int:
    from imagetool.trust import artifacts, remote
    ref = remote.parse_ref(args.ref, "REF")
    with _client(ref) as client:
        for path in artifacts.pull(client, ref, args.output):
            print(path)
    return 0


def cmd_artifact_ls(args: argparse.Namespace) -> int:
    from imagetool.trust import artifacts, remote
    ref = remote.parse_ref(args.image)
    with _client(ref) as client:
        digest, found = artifacts.ls(client, ref, args.artifact_type)
    if args.format == "json":
        print(json.dumps({"subject": digest, "referrers": found}, indent=2))
    else:
        for d in found:
            print(f"{d['digest']}\t{d.get('artifactType', '')}")
    return 0


def cmd_attest(args: argparse.Namespace) -> int:
    from imagetool.trust import attest, remote
    key = _private_key(args)
    ref = remote.parse_ref(args.image)
    predicate = _read(args.predicate, "--predicate")
    with _client(ref) as client:
        digest, where = attest.attest(client, ref, key, predicate, args.type)
    print(f"Pushing attestation for {ref.name}@{digest} to {where}", file=sys.stderr)
    return 0


def cmd_verify_attestation(args: argparse.Namespace) -> int:
    from imagetool.trust import attest, remote
    pub = _public_key(args.key)
    ref = remote.parse_ref(args.image)
    with _client(ref) as client:
        digest, good = attest.verify(client, ref, pub, args.type)
    print(f"Verification for {ref.name}@{digest} -- {len(good)} attestation(s) verified",
          file=sys.stderr)
    for statement in good:
        print(json.dumps(statement))
    return 0


def register(verb: Any, sub: Any) -> None:
    """Add the trust verbs to imagetool's parser (`verb(name, fn, help)` makes one)."""
    sp = verb("key", None, "manage signing keys (cosign-compatible)")
    ksub = sp.add_subparsers(dest="key_verb", metavar="ACTION", required=True)
    kp = ksub.add_parser("generate", help="write a cosign-compatible ECDSA P-256 key pair")
    kp.set_defaults(fn=cmd_key_generate)
    kp.add_argument("--output-prefix", default="cosign", help="PREFIX.key and PREFIX.pub")
    kp.add_argument("--passphrase-file", help="read the passphrase here (else "
                    "$COSIGN_PASSWORD, else a prompt)")
    kp.add_argument("--force", action="store_true", help="overwrite existing files")

    sp = verb("sign", cmd_sign, "sign an image in a registry (cosign's format)")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--key", help="cosign private key file")
    sp.add_argument("--sign-by", metavar="FINGERPRINT", help="instead: a GPG simple signing "
                    "signature by this key of $GNUPGHOME, stored in the lookaside")
    sp.add_argument("--registries.d", dest="registries_d", metavar="DIR",
                    help="lookaside configuration for --sign-by")
    sp.add_argument("--passphrase-file")
    sp.add_argument("--referrers", action="store_true",
                    help="store the signature as an OCI 1.1 referrer, not a .sig tag")
    sp.add_argument("-a", "--annotation", action="append", metavar="KEY=VALUE",
                    help="extra claim in the payload's optional section (repeatable)")

    sp = verb("verify", cmd_verify, "verify an image's cosign signatures with a public key")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--key", help="public key (PEM)")
    sp.add_argument("--identity", help="the repository the signature must name "
                    "(default: IMAGE's)")
    sp.add_argument("--signature-policy", metavar="FILE",
                    help="instead of --key: check IMAGE against this containers-policy.json")
    sp.add_argument("--registries.d", dest="registries_d", metavar="DIR",
                    help="lookaside configuration for signedBy requirements")

    sp = verb("artifact", None, "push, pull and list OCI 1.1 artifacts")
    asub = sp.add_subparsers(dest="artifact_verb", metavar="ACTION", required=True)
    ap = asub.add_parser("push", help="push files as an artifact")
    ap.set_defaults(fn=cmd_artifact_push)
    ap.add_argument("ref", metavar="REF")
    ap.add_argument("files", nargs="+", metavar="FILE[:MEDIATYPE]")
    ap.add_argument("--artifact-type", required=True)
    ap.add_argument("--subject", metavar="IMAGE", help="the image this artifact refers to")
    ap.add_argument("--annotation", action="append", metavar="KEY=VALUE")
    ap = asub.add_parser("pull", help="download an artifact's files")
    ap.set_defaults(fn=cmd_artifact_pull)
    ap.add_argument("ref", metavar="REF")
    ap.add_argument("-o", "--output", default=".", metavar="DIR")
    ap = asub.add_parser("ls", help="list the artifacts referring to an image")
    ap.set_defaults(fn=cmd_artifact_ls)
    ap.add_argument("image", metavar="IMAGE")
    ap.add_argument("--artifact-type", help="only this type")
    ap.add_argument("--format", choices=("table", "json"), default="table")

    sp = verb("attest", cmd_attest, "attach a signed in-toto attestation (cosign's format)")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--key", required=True)
    sp.add_argument("--passphrase-file")
    sp.add_argument("--predicate", required=True, metavar="FILE")
    sp.add_argument("--type", default="https://cosign.sigstore.dev/attestation/v1",
                    help="predicate type URI (slsaprovenance = SLSA provenance v0.2)")

    sp = verb("verify-attestation", cmd_verify_attestation,
              "verify an image's attestations with a public key")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--key", required=True)
    sp.add_argument("--type", help="only attestations of this predicate type")
