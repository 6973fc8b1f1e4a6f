"""containers-policy.json enforcement by `imagetool pull` (and `verify --signature-policy`):
scopes, insecureAcceptAnything, reject, sigstoreSigned with cosign signatures made by
`imagetool sign`, signedIdentity variants, and bad policy files. A refused pull is one line,
a non-zero exit, and leaves nothing in the store."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.imagetool.images import skopeo_copy


def write_policy(it, doc: dict, name: str = "policy.json") -> str:
    path = os.path.join(it.tmp, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def docker(scopes: dict, default: str = "reject") -> dict:
    return {"default": [{"type": default}], "transports": {"docker": scopes}}


def names(it) -> list[str]:
    if not os.path.exists(it.root):
        return []
    from imagetool.store import Store
    return [d["annotations"]["org.opencontainers.image.ref.name"]
            for d in Store(it.root).list_images()]


def test_bad_policy_files(it, pushed):
    cases = {"unknown requirement type 'sigstoreSignedd'":
             docker({"": [{"type": "sigstoreSignedd", "keyPath": "/x"}]}),
             "unknown field 'keypath'": docker({"": [{"type": "sigstoreSigned",
                                                      "keypath": "/x"}]}),
             "signedIdentity: unknown type 'matchEverything'":
             docker({"": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/x",
                           "signedIdentity": {"type": "matchEverything"}}]}),
             "keyType 'X509Certificates' is not supported":
             docker({"": [{"type": "signedBy", "keyType": "X509Certificates",
                           "keyPath": "/x"}]}),
             "want an object with a 'default' list": {"transports": {}}}
    for i, (msg, doc) in enumerate(cases.items()):
        path = write_policy(it, doc, f"bad{i}.json")
        assert msg in it.fails("pull", "-q", "--signature-policy", path, pushed.ref)
        assert msg in it.fails("verify", "--signature-policy", path, pushed.ref)
    with open(os.path.join(it.tmp, "notjson.json"), "w") as f:
        f.write("{")
    assert "not JSON" in it.fails("pull", "-q", "--signature-policy",
                                  os.path.join(it.tmp, "notjson.json"), pushed.ref)
    assert names(it) == []


def test_scopes_accept_and_reject(it, pushed):
    repo = f"{pushed.host}/{pushed.repo}"
    path = write_policy(it, docker({repo: [{"type": "insecureAcceptAnything"}],
                                    f"{repo}:2": [{"type": "reject"}]}))
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:2", "--src-tls-verify=false",
                "--dest-tls-verify=false")
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{pushed.host}/other/app:1",
                "--src-tls-verify=false", "--dest-tls-verify=false")
    assert "rejected by policy" in it.fails("pull", "-q", "--signature-policy", path,
                                            f"{repo}:2")
    assert "rejected by policy" in it.fails("pull", "-q", "--signature-policy", path,
                                            f"{pushed.host}/other/app:1")
    assert names(it) == []
    it.run("pull", "-q", "--signature-policy", path, pushed.ref)
    assert names(it) == [pushed.ref]
    # the environment variable is the default; the transport's "" scope is a fallback
    it.env["IMAGETOOL_SIGNATURE_POLICY"] = write_policy(
        it, docker({"": [{"type": "reject"}]}, "insecureAcceptAnything"), "env.json")
    assert "rejected by policy" in it.fails("pull", "-q", f"{pushed.host}/other/app:1")


@pytest.fixture
def signed(it, pushed, keypair, passfile):
    it.run("sign", "--key", keypair[0], "--passphrase-file", passfile, pushed.ref)
    return keypair[1]


def test_sigstore_signed(it, pushed, signed, hand_other_key):
    repo = f"{pushed.host}/{pushed.repo}"
    by_path = {"type": "sigstoreSigned", "keyPath": signed,
               "signedIdentity": {"type": "matchRepository"}}
    with open(signed, "rb") as f:
        by_data = {"type": "sigstoreSigned", "keyData": base64.b64encode(f.read()).decode(),
                   "signedIdentity": {"type": "matchRepository"}}
    for req in (by_path, by_data):
        path = write_policy(it, docker({repo: [req]}))
        assert "accepted by" in it.run("verify", "--signature-policy", path,
                                       pushed.ref).stdout.decode()
    # the default identity (matchRepoDigestOrExact) wants the tag cosign does not sign ...
    tagless = write_policy(it, docker({repo: [{"type": "sigstoreSigned", "keyPath": signed}]}),
                           "tagless.json")
    assert "signed for" in it.fails("pull", "-q", "--signature-policy", tagless, pushed.ref)
    # ... but a pull by digest only needs the repository
    it.run("pull", "-q", "--signature-policy", tagless, f"{repo}@{pushed.digest()}")
    # another key, an unsigned image: refused, nothing stored
    other = write_policy(it, docker({repo: [{"type": "sigstoreSigned", "keyPath": hand_other_key,
                                             "signedIdentity": {"type": "matchRepository"}}]}),
                         "other.json")
    assert "does not match the key" in it.fails("pull", "-q", "--signature-policy", other,
                                                pushed.ref)
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:v2s2", "--format", "v2s2",
                "--src-tls-verify=false", "--dest-tls-verify=false")
    assert "none found" in it.fails("pull", "-q", "--signature-policy", path, f"{repo}:v2s2")
    assert pushed.ref not in names(it)
    it.run("pull", "-q", "--signature-policy", path, pushed.ref)
    assert pushed.ref in names(it)
    # remapIdentity: a mirror's name mapped onto the signed one
    remap = write_policy(it, docker({"": [{
        "type": "sigstoreSigned", "keyPath": signed,
        "signedIdentity": {"type": "exactRepository", "dockerRepository": repo}}]}), "rm.json")
    it.run("verify", "--signature-policy", remap, pushed.ref)


@pytest.fixture
def hand_other_key(tmp_path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    pub = tmp_path / "other.pub"
    pub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(pub)


def test_identity_rules():
    from imagetool.reference import parse
    from imagetool.trust.policy import identity_ok
    img = parse("reg.example/ns/app:1")
    dig = parse("reg.example/ns/app@sha256:" + "a" * 64)
    assert identity_ok(None, img, "reg.example/ns/app:1")
    assert not identity_ok(None, img, "reg.example/ns/app:2")
    assert identity_ok(None, dig, "reg.example/ns/app:2")
    assert identity_ok({"type": "matchRepository"}, img, "reg.example/ns/app")
    assert not identity_ok({"type": "matchExact"}, dig, "reg.example/ns/app:2")
    assert identity_ok({"type": "exactReference", "dockerReference": "reg.example/x:3"}, img,
                       "reg.example/x:3")
    remap = {"type": "remapIdentity", "prefix": "mirror.example/ns",
             "signedPrefix": "reg.example/ns"}
    assert identity_ok(remap, parse("mirror.example/ns/app:1"), "reg.example/ns/app:1")
    assert not identity_ok(remap, parse("mirror.example/ns/app:1"), "mirror.example/ns/app:2")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container")
def test_run_enforces_the_policy_when_it_pulls(it, pushed, signed):
    """`imagetool run` pulls a missing image under the policy ($IMAGETOOL_SIGNATURE_POLICY):
    the signed image runs, an unsigned one is refused before anything is stored or run."""
    from tests.imagetool.storehelp import remove_containers, unmount_under
    repo = f"{pushed.host}/{pushed.repo}"
    it.env["IMAGETOOL_SIGNATURE_POLICY"] = write_policy(it, docker({repo: [{
        "type": "sigstoreSigned", "keyPath": signed,
        "signedIdentity": {"type": "matchRepository"}}]}))
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:unsigned", "--format", "v2s2",
                "--src-tls-verify=false", "--dest-tls-verify=false")
    try:
        p = it.run("run", "--rm", "--network", "none", f"{repo}:unsigned", "/bin/true",
                   check=False)
        err = p.stderr.decode().strip().splitlines()  # docker's "Unable to find", the refusal
        assert p.returncode != 0 and err[-1].startswith("imagetool: run: ") and len(err) == 2
        assert "none found" in err[-1]
        assert names(it) == []
        p = it.run("run", "--rm", "--network", "none", pushed.ref, "/bin/echo", "signed ok",
                   timeout=180)
        assert p.stdout.decode().strip() == "signed ok"
        assert names(it) == [pushed.ref]
    finally:
        if os.path.exists(it.root):
            remove_containers(it.root)
        unmount_under(it.tmp)


def test_unsupported_requirements_refuse_only_where_used(it, pushed):
    """A policy (like Fedora's) with fulcio requirements for other registries still loads;
    an image under such a scope is refused with the reason."""
    repo = f"{pushed.host}/{pushed.repo}"
    fulcio = {"type": "sigstoreSigned", "fulcio": {"caPath": "/x", "oidcIssuer": "https://i",
                                                   "subjectEmail": "a@b"},
              "rekorPublicKeyPath": "/y", "signedIdentity": {"type": "matchRepository"}}
    path = write_policy(it, docker({"quay.example/ns": [fulcio], f"{repo}:x": [fulcio]},
                                   default="insecureAcceptAnything"))
    it.run("pull", "-q", "--signature-policy", path, pushed.ref)
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:x", "--src-tls-verify=false",
                "--dest-tls-verify=false")
    assert "fulcio/rekor is not supported" in it.fails("pull", "-q", "--signature-policy", path,
                                                       f"{repo}:x")
    assert names(it) == [pushed.ref]
