"""OCI 1.1 artifacts on a docker-registry 2.8 (no referrers API, so the referrers tag schema):
`artifact push/pull/ls` round trips, referrers filtered by type, bad input refused with one
line, and interop with oras-py, the ORAS Python client: it pushes, we pull byte for byte; we
push, it pulls byte for byte."""

from __future__ import annotations

import json
import os

import pytest

from tests.imagetool.trust.rawreg import sha256

SBOM = "application/spdx+json"
NOTE = "application/vnd.example.note.v1"


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_push_pull_ls_with_subject(it, pushed):
    a = write(os.path.join(it.tmp, "sbom.json"), b'{"spdxVersion": "SPDX-2.3"}\n')
    b = write(os.path.join(it.tmp, "blob.bin"), os.urandom(3 << 20))
    repo = f"{pushed.host}/{pushed.repo}"
    d1 = it.run("artifact", "push", f"{repo}:sbom", a, b, "--artifact-type", SBOM,
                "--subject", pushed.ref, "--annotation", "org.example.k=v").stdout.decode().strip()
    d2 = it.run("artifact", "push", f"{repo}:note", f"{a}:text/plain", "--artifact-type", NOTE,
                "--subject", pushed.ref).stdout.decode().strip()
    raw, man = pushed.raw.manifest(pushed.repo, "sbom")
    assert sha256(raw) == d1
    assert man["artifactType"] == SBOM and man["subject"]["digest"] == pushed.digest()
    assert man["config"] == {"mediaType": "application/vnd.oci.empty.v1+json",
                             "digest": sha256(b"{}"), "size": 2}
    assert man["annotations"] == {"org.example.k": "v"}
    assert [ly["annotations"]["org.opencontainers.image.title"] for ly in man["layers"]] == \
        ["sbom.json", "blob.bin"]
    # the referrers tag schema: an index under sha256-<hex> lists both
    _, idx = pushed.raw.manifest(pushed.repo, pushed.digest().replace(":", "-"))
    assert {(d["digest"], d["artifactType"]) for d in idx["manifests"]} == {(d1, SBOM),
                                                                          (d2, NOTE)}
    out = it.run("artifact", "ls", pushed.ref, "--format", "json").stdout
    assert {d["digest"] for d in json.loads(out)["referrers"]} == {d1, d2}
    only = it.run("artifact", "ls", pushed.ref, "--artifact-type", NOTE).stdout.decode()
    assert only.split() == [d2, NOTE]
    dest = os.path.join(it.tmp, "out")
    it.run("artifact", "pull", f"{repo}:sbom", "-o", dest)
    for src in (a, b):
        with open(src, "rb") as f1, open(os.path.join(dest, os.path.basename(src)), "rb") as f2:
            assert f1.read() == f2.read()
    assert sorted(os.listdir(dest)) == ["blob.bin", "sbom.json"]  # no temp dirs left


def test_artifact_refusals(it, pushed):
    a = write(os.path.join(it.tmp, "x.txt"), b"x")
    repo = f"{pushed.host}/{pushed.repo}"
    assert "--artifact-type" in it.fails("artifact", "push", f"{repo}:x", a,
                                         "--artifact-type", "nosubtype")
    assert "not a regular file" in it.fails("artifact", "push", f"{repo}:x", it.tmp,
                                            "--artifact-type", NOTE)
    assert "must be in" in it.fails("artifact", "push", f"{pushed.host}/else/where:x", a,
                                    "--artifact-type", NOTE, "--subject", pushed.ref)
    assert "want KEY=VALUE" in it.fails("artifact", "push", f"{repo}:x", a, "--artifact-type",
                                        NOTE, "--annotation", "novalue")
    assert "x" not in pushed.raw.tags(pushed.repo)
    assert "not found" in it.fails("artifact", "pull", f"{repo}:missing", "-o", it.tmp)


@pytest.fixture
def oras_client(pushed):
    oras_client = pytest.importorskip("oras.client")
    return oras_client.OrasClient(hostname=pushed.host, insecure=True)


def test_oras_pushes_we_pull(it, pushed, oras_client, monkeypatch):
    src = os.path.join(it.tmp, "src")
    os.makedirs(src)
    data = {"hello.txt": b"hello from oras\n", "data.bin": os.urandom(1 << 20)}
    for name, body in data.items():
        write(os.path.join(src, name), body)
    monkeypatch.chdir(src)  # oras-py wants paths under the working directory
    target = f"{pushed.host}/{pushed.repo}:from-oras"
    oras_client.push(target=target, files=list(data), quiet=True)
    dest = os.path.join(it.tmp, "got")
    it.run("artifact", "pull", target, "-o", dest)
    for name, body in data.items():
        with open(os.path.join(dest, name), "rb") as f:
            assert f.read() == body


def test_we_push_oras_pulls(it, pushed, oras_client):
    data = {"notes.md": b"# signed and sealed\n", "big.bin": os.urandom(2 << 20)}
    paths = [write(os.path.join(it.tmp, n), b) for n, b in data.items()]
    target = f"{pushed.host}/{pushed.repo}:from-imagetool"
    it.run("artifact", "push", target, *paths, "--artifact-type", NOTE,
           "--subject", pushed.ref)
    dest = os.path.join(it.tmp, "oras-out")
    got = oras_client.pull(target=target, outdir=dest)
    assert sorted(os.path.basename(p) for p in got) == sorted(data)
    for name, body in data.items():
        with open(os.path.join(dest, name), "rb") as f:
            assert f.read() == body


@pytest.fixture
def referrers_api(pushed):
    """A proxy in front of the registry that adds the OCI 1.1 referrers API (registry 2.8 has
    none): it remembers manifest PUTs and answers GET /v2/<name>/referrers/<digest> from
    them, honouring ?artifactType=."""
    import re
    import urllib.parse

    from tests.imagetool.faultproxy import FaultProxy, Respond
    puts: list[tuple[str, str]] = []
    pattern = re.compile(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})(?:\?artifactType=(.*))?$")

    def rule(method: str, path: str, headers: dict, n: int):
        if method == "PUT" and "/manifests/" in path:
            repo, _, ref = path[len("/v2/"):].partition("/manifests/")
            puts.append((repo, ref))
            return None
        m = pattern.match(path)
        if method != "GET" or not m:
            return None
        repo, digest, want = m.group(1), m.group(2), m.group(3)
        want = urllib.parse.unquote(want) if want else None
        found = {}
        for r, ref in puts:
            got = pushed.raw.manifest(r, ref) if r == repo else None
            if got and (got[1].get("subject") or {}).get("digest") == digest:
                at = got[1].get("artifactType") or got[1]["config"]["mediaType"]
                if want is None or at == want:
                    found[sha256(got[0])] = {"mediaType": got[1]["mediaType"],
                                             "digest": sha256(got[0]), "size": len(got[0]),
                                             "artifactType": at}
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": list(found.values())}).encode()
        return Respond(200, {"Content-Type": "application/vnd.oci.image.index.v1+json",
                             "OCI-Filters-Applied": "artifactType"}, body)

    proxy = FaultProxy(("127.0.0.1", pushed.registry.port), rule).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_referrers_api_is_used_when_present(it, pushed, referrers_api, keypair, passfile):
    via = f"{referrers_api.host}/{pushed.repo}"
    a = write(os.path.join(it.tmp, "sbom.json"), b"{}")
    d1 = it.run("artifact", "push", f"{via}:sbom", a, "--artifact-type", SBOM,
                "--subject", f"{via}:1").stdout.decode().strip()
    it.run("sign", "--referrers", "--key", keypair[0], "--passphrase-file", passfile,
           f"{via}:1")
    # no referrers tag index: the registry (through the proxy) indexes them itself
    assert pushed.digest().replace(":", "-") not in pushed.raw.tags(pushed.repo)
    assert referrers_api.requests("GET", "/referrers/")
    listed = json.loads(it.run("artifact", "ls", f"{via}:1", "--format", "json").stdout)
    assert {d["artifactType"] for d in listed["referrers"]} == {
        SBOM, "application/vnd.dev.cosign.artifact.sig.v1+json"}
    only = it.run("artifact", "ls", f"{via}:1", "--artifact-type", SBOM).stdout.decode()
    assert only.split() == [d1, SBOM]
    out = json.loads(it.run("verify", "--key", keypair[1], f"{via}:1").stdout)
    assert out[0]["critical"]["image"]["docker-manifest-digest"] == pushed.digest()
    # straight to the registry (no API, no tag index) nothing is found
    assert it.run("artifact", "ls", pushed.ref).stdout.decode().strip() == ""
