"""Manifests and platforms: multi-platform images pushed by skopeo (an OCI index with an
attestation entry, and a Docker manifest list) pulled per platform or whole; the raw bytes
are stored as served and every manifest is checked against its digest (a 127.0.0.1 proxy
tampers with bodies to prove it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from imagetool import mediatypes as mt
from imagetool.pull import pull
from imagetool.registry import platform as plat
from imagetool.registry.errors import DigestMismatch, ManifestError
from imagetool.registry.manifests import parse_manifest
from tests.imagetool.conftest import assert_clean
from tests.imagetool.faultproxy import FaultProxy, Respond
from tests.imagetool.images import skopeo_copy


def _raw(reg, repo_tag: str) -> bytes:
    p = subprocess.run(["skopeo", "inspect", "--raw", *[a.replace("dest-", "") for a in
                                                         reg.skopeo_args()],
                        f"docker://{reg.ref(repo_tag)}"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_normalize_and_host() -> None:
    assert plat.parse("linux/x86_64") == plat.Platform("linux", "amd64")
    assert plat.parse("linux/aarch64") == plat.Platform("linux", "arm64")
    assert plat.parse("linux/arm64/v8") == plat.Platform("linux", "arm64")
    assert plat.parse("linux/armv7l") == plat.Platform("linux", "arm", "v7")
    assert plat.parse("linux/arm") == plat.Platform("linux", "arm", "v7")
    assert plat.parse("Linux/ARM/6") == plat.Platform("linux", "arm", "v6")
    assert plat.parse("linux/i686") == plat.Platform("linux", "386")
    assert str(plat.parse("linux/arm/v6")) == "linux/arm/v6"
    assert plat.host().os == "linux" and plat.host().architecture in ("amd64", "arm64")
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(ManifestError, match="want os/arch"):
            plat.parse(bad)


def test_select_skips_attestations_and_prefers_exact_variant() -> None:
    entries = [
        {"digest": "att", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "v6", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "v7", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "a64", "platform": {"os": "linux", "architecture": "aarch64"}},
        {"digest": "x", "platform": {"os": "linux", "architecture": "amd64"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    ]
    assert plat.select(entries, plat.parse("linux/arm/v6"), "r")["digest"] == "v6"
    assert plat.select(entries, plat.parse("linux/arm"), "r")["digest"] == "v7"
    assert plat.select(entries, plat.parse("linux/arm64/v8"), "r")["digest"] == "a64"
    with pytest.raises(ManifestError) as e:
        plat.select(entries, plat.parse("linux/amd64"), "reg/x:1")
    assert str(e.value) == ("reg/x:1: no manifest for platform linux/amd64 "
                            "(available: linux/arm/v6, linux/arm/v7, linux/arm64)")


def test_schema1_and_junk_refused() -> None:
    with pytest.raises(ManifestError, match="schema1"):
        parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}', None, "sha256:x", "r")
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b"<html>", "text/html", "sha256:x", "r")
    with pytest.raises(ManifestError, match="descriptor 1 lacks"):
        parse_manifest(json.dumps({"mediaType": mt.OCI_MANIFEST, "config": {
            "digest": "sha256:a", "size": 1}, "layers": [{"digest": "sha256:b"}]}).encode(),
            None, "sha256:x", "r")


def test_oci_index_per_platform(registry, multiarch, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:oci", f"docker://{reg.ref('multi:1')}", "--all",
                "--preserve-digests", *reg.skopeo_args())
    served = _raw(reg, "multi:1")
    ref = reg.ref("multi:1")
    descs = multiarch["descs"]
    digest = pull(store, ref, platform="linux/aarch64", config=reg.config(), progress=False)
    assert store.read_blob(digest) == served  # the index exactly as served, named
    assert store.get_image(ref)["mediaType"] == mt.OCI_INDEX
    assert store.has_blob(descs["arm64"]["digest"])
    assert not store.has_blob(descs["amd64"]["digest"])
    assert not store.has_blob(descs["arm"]["digest"])
    arm64 = store.read_json(descs["arm64"]["digest"])
    assert store.read_json(arm64["config"]["digest"])["architecture"] == "arm64"
    pull(store, ref, platform="linux/arm/v7", config=reg.config(), progress=False)
    assert store.has_blob(descs["arm"]["digest"])
    with pytest.raises(ManifestError) as e:
        pull(store, ref, platform="linux/s390x", config=reg.config(), progress=False)
    assert str(e.value) == (f"{ref}: no manifest for platform linux/s390x "
                            "(available: linux/amd64, linux/arm/v7, linux/arm64)")
    assert not store.has_blob(multiarch["attestation"]["digest"])
    assert_clean(store)


def test_oci_index_all_platforms_and_host_default(registry, multiarch, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:oci", f"docker://{reg.ref('multi:1')}", "--all",
                "--preserve-digests", *reg.skopeo_args())
    ref = reg.ref("multi:1")
    pull(store, ref, config=reg.config(), progress=False)
    host = str(plat.host())
    for arch, d in multiarch["descs"].items():
        assert store.has_blob(d["digest"]) == (host == f"linux/{arch}")
    pull(store, ref, all_platforms=True, config=reg.config(), progress=False)
    for d in [*multiarch["descs"].values(), multiarch["attestation"]]:
        assert store.has_blob(d["digest"])
        for blob in [store.read_json(d["digest"])["config"],
                     *store.read_json(d["digest"])["layers"]]:
            assert store.has_blob(blob["digest"])
    assert_clean(store)


def test_docker_manifest_list(registry, multiarch, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:two", f"docker://{reg.ref('list:1')}", "--all",
                "--format", "v2s2", *reg.skopeo_args())
    served = _raw(reg, "list:1")
    assert json.loads(served)["mediaType"] == mt.DOCKER_LIST
    ref = reg.ref("list:1")
    digest = pull(store, ref, platform="linux/arm64", config=reg.config(), progress=False)
    assert store.read_blob(digest) == served
    chosen = [d for d in json.loads(served)["manifests"]
              if d["platform"]["architecture"] == "arm64"]
    assert len(chosen) == 1 and store.has_blob(chosen[0]["digest"])
    m = store.read_json(chosen[0]["digest"])
    assert m["mediaType"] == mt.DOCKER_MANIFEST
    assert all(store.has_blob(b["digest"]) for b in [m["config"], *m["layers"]])
    assert_clean(store)


def test_single_manifest_platform_mismatch(registry, multiarch, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:arm64", f"docker://{reg.ref('one:arm64')}",
                *reg.skopeo_args())
    ref = reg.ref("one:arm64")
    with pytest.raises(ManifestError) as e:
        pull(store, ref, platform="linux/amd64", config=reg.config(), progress=False)
    assert str(e.value) == f"{ref}: image is linux/arm64, not the requested platform linux/amd64"
    assert store.get_image(ref) is None
    assert pull(store, ref, platform="linux/arm64", config=reg.config(), progress=False)
    assert_clean(store)


def _tamper(body: bytes) -> bytes:
    doc = json.loads(body)
    doc["annotations"] = {"evil": "yes"}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("where", ["top", "child"])
def test_tampered_manifest_is_refused(registry, multiarch, store, where):
    """A proxy rewrites the index (served under its tag, with the real Docker-Content-Digest)
    or the chosen child manifest (asked for by digest): both must fail verification."""
    reg = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:two", f"docker://{reg.ref('multi:1')}", "--all",
                "--preserve-digests", *reg.skopeo_args())
    served = _raw(reg, "multi:1")
    child = multiarch["descs"]["arm64"]["digest"]
    import hashlib
    top_digest = "sha256:" + hashlib.sha256(served).hexdigest()

    def rule(method, path, headers, n):
        if method != "GET" or "/manifests/" not in path:
            return None
        if where == "top" and path.endswith("/manifests/1"):
            return Respond(200, {"Content-Type": mt.OCI_INDEX,
                                 "Docker-Content-Digest": top_digest}, _tamper(served))
        if where == "child" and path.endswith(child):
            with open(f"{multiarch['path']}/blobs/sha256/{child[7:]}", "rb") as f:
                return Respond(200, {"Content-Type": mt.OCI_MANIFEST}, _tamper(f.read()))
        return None

    proxy = FaultProxy(("127.0.0.1", reg.port), rule).start()
    try:
        with pytest.raises(DigestMismatch) as e:
            pull(store, f"{proxy.host}/multi:1", platform="linux/arm64", config=reg.config(),
                 progress=False)
    finally:
        proxy.stop()
    want = top_digest if where == "top" else child
    assert f"digest mismatch (expected {want}, got sha256:" in str(e.value)
    assert f"{proxy.host}/multi:1" in str(e.value)
    assert store.list_images() == [] and not store.has_blob(want)
    assert_clean(store)
