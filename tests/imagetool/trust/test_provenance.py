"""`imagetool build --provenance`: the tag names an index of [image, attestation manifest]
(BuildKit's layout) whose in-toto statement records the builder, the Dockerfile's digest, the
base image with its digest in the store, the build args, and secret ids but never their
contents; the result still unpacks and pushes (skopeo reads the index back)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

from imagetool.store import Store
from tests.imagetool.storehelp import rootfs_tar

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE} AS base
LABEL stage=one
FROM base
COPY hello.txt /hello.txt
"""
SECRET = "s3cr3t-value-never-recorded"


def test_build_provenance(it, registry, tmp_path):
    it.run("import", rootfs_tar(str(tmp_path)), "busybox:latest")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hi\n")
    (tmp_path / "tok").write_text(SECRET)
    assert "--provenance needs -t" in it.fails("build", "--provenance", "-o",
                                               f"type=oci,dest={tmp_path}/x.tar", str(ctx))
    it.run("build", "-q", "--provenance", "-t", "app:1", "--build-arg", "X=1", "--secret",
           f"id=tok,src={tmp_path}/tok", "--pull-never", str(ctx), timeout=300)
    st = Store(it.root)
    top = st.get_image("docker.io/library/app:1")
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    image, att = st.read_json(top)["manifests"]
    assert att["annotations"] == {"vnd.docker.reference.digest": image["digest"],
                                  "vnd.docker.reference.type": "attestation-manifest"}
    assert att["platform"] == {"architecture": "unknown", "os": "unknown"}
    (layer,) = st.read_json(att)["layers"]
    assert layer["mediaType"] == "application/vnd.in-toto+json"
    raw = st.read_blob(layer["digest"])
    assert SECRET.encode() not in raw
    stmt = json.loads(raw)
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert stmt["subject"] == [{"name": "app:1", "digest": {"sha256": image["digest"][7:]}}]
    pred = stmt["predicate"]
    assert pred["invocation"]["configSource"]["digest"] == {
        "sha256": hashlib.sha256(DOCKERFILE.encode()).hexdigest()}
    assert pred["invocation"]["parameters"]["args"] == {"X": "1"}
    assert pred["invocation"]["parameters"]["secrets"] == ["tok"]
    busybox = st.get_image("docker.io/library/busybox:latest")["digest"]
    assert pred["materials"] == [{"uri": "pkg:docker/docker.io/library/busybox@latest",
                                  "digest": {"sha256": busybox[7:]}}]
    # still an image: it unpacks, and pushes as an index skopeo reads back
    bundle = tmp_path / "bundle"
    it.run("unpack", "app:1", str(bundle))
    assert (bundle / "rootfs" / "hello.txt").read_text() == "hi\n"
    shutil.rmtree(bundle)
    reg = registry("plain")
    it.run("push", "-q", "app:1", reg.ref("prov/app:1"))
    p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{reg.ref('prov/app:1')}"], capture_output=True, text=True,
                       timeout=60, check=True)
    assert [m["digest"] for m in json.loads(p.stdout)["manifests"]] == [image["digest"],
                                                                        att["digest"]]
    assert not os.path.exists(bundle)
