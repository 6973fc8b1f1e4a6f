"""Push against a real docker-registry in every mode, read back by skopeo (and containerd's
ctr when it is installed): monolithic and chunked uploads, HEAD skipping what exists,
cross-repository mounts under token auth, manifest lists/indexes and the tag. A 127.0.0.1
proxy in front of the registry only counts requests; it changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from imagetool.pull import pull
from imagetool.push import push
from imagetool.registry.client import login
from imagetool.registry.errors import ManifestError, RegistryError
from imagetool.store import Store
from tests.imagetool.conftest import PASSWORD, USER, Recorder, assert_clean
from tests.imagetool.faultproxy import FaultProxy
from tests.imagetool.images import sha256, skopeo_copy


def _inspect_raw(reg, repo_tag: str) -> bytes:
    args = [a.replace("dest-", "") for a in reg.skopeo_args()]
    p = subprocess.run(["skopeo", "inspect", "--raw", *args, f"docker://{reg.ref(repo_tag)}"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _skopeo_pull_back(reg, repo_tag: str, dest: str, *extra: str) -> None:
    skopeo_copy(f"docker://{reg.ref(repo_tag)}", f"oci:{dest}:back", *extra,
                *[a.replace("dest-", "src-") for a in reg.skopeo_args()])


@pytest.fixture
def source(registry, busybox_oci, store):
    """busybox in the store, pulled from a plain registry where skopeo put it."""
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('busybox:latest')}",
                *reg.skopeo_args())
    ref = reg.ref("busybox:latest")
    digest = pull(store, ref, config=reg.config(), progress=False)
    return {"ref": ref, "digest": digest, "registry": reg}


@pytest.mark.parametrize("mode", ["plain", "tls", "basic", "token"])
def test_push_in_every_mode_read_back_by_skopeo(registry, source, store, mode, docker_config,
                                                 tmp_path):
    dst = registry(mode)
    if mode in ("basic", "token"):
        login(dst.host, USER, PASSWORD, config=dst.config())
    target = dst.ref("pushed/busybox:v1")
    digest = push(store, source["ref"], target, config=dst.config(), progress=False)
    assert digest == source["digest"]
    assert _inspect_raw(dst, "pushed/busybox:v1") == store.read_blob(digest)
    out = str(tmp_path / "back")
    _skopeo_pull_back(dst, "pushed/busybox:v1", out)
    with open(os.path.join(out, "index.json")) as f:
        assert json.load(f)["manifests"][0]["digest"] == digest


def test_chunked_upload_then_head_skips_everything(registry, source, store):
    reg = registry("plain")
    proxy = FaultProxy(("127.0.0.1", reg.port)).start()
    try:
        rec = Recorder()
        target = f"{proxy.host}/chunked:1"
        push(store, source["ref"], target, config=reg.config(), reporter=rec,
             chunk_size=256 << 10)
        layer = store.read_json(source["digest"])["layers"][0]
        patches = proxy.requests("PATCH", "/v2/chunked/blobs/uploads/")
        ranges = sorted(int(e.headers["Content-Range"].split("-")[0]) for e in patches)
        assert ranges == list(range(0, layer["size"], 256 << 10))  # 5 chunks of the layer
        assert len(rec.kinds("start")) == 2  # config (monolithic PUT) and layer (chunked)
        again = Recorder()
        push(store, source["ref"], target, config=reg.config(), reporter=again)
        assert [v for _, v in again.kinds("skipped")] == ["already exists"] * 2
        assert again.kinds("start") == []
        assert len(proxy.requests("POST")) == 2  # the second push started no upload
    finally:
        proxy.stop()
    assert _inspect_raw(reg, "chunked:1") == store.read_blob(source["digest"])


def test_cross_repository_mount_with_token_scopes(registry, busybox_oci, store,
                                                  docker_config):
    reg = registry("token")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('team/a:1')}",
                *reg.skopeo_args())
    login(reg.host, USER, PASSWORD, config=reg.config())
    pull(store, reg.ref("team/a:1"), config=reg.config(), progress=False)
    rec = Recorder()
    reg.issuer.log.clear()
    digest = push(store, reg.ref("team/a:1"), reg.ref("team/b:1"), config=reg.config(),
                  reporter=rec)
    assert sorted(v for _, v in rec.kinds("skipped")) == ["mounted from team/a"] * 2
    assert any(sorted(r.scopes) == ["repository:team/a:pull", "repository:team/b:pull,push"]
               for r in reg.issuer.log)
    assert _inspect_raw(reg, "team/b:1") == store.read_blob(digest)


def test_push_whole_index_and_partial_index(registry, multiarch, store, tmp_path):
    src = registry("plain")
    skopeo_copy(f"oci:{multiarch['path']}:oci", f"docker://{src.ref('multi:1')}", "--all",
                "--preserve-digests", *src.skopeo_args())
    pull(store, src.ref("multi:1"), all_platforms=True, config=src.config(), progress=False)
    dst = registry("plain")
    digest = push(store, src.ref("multi:1"), dst.ref("copy/multi:1"), config=dst.config(),
                  progress=False)
    assert _inspect_raw(dst, "copy/multi:1") == _inspect_raw(src, "multi:1")
    out = str(tmp_path / "back")
    _skopeo_pull_back(dst, "copy/multi:1", out, "--all")
    assert sha256(_inspect_raw(dst, "copy/multi:1")) == digest
    # One platform only in the store: its manifest is pushed alone, and we say so.
    partial = Store(str(tmp_path / "partial"))
    pull(partial, src.ref("multi:1"), platform="linux/arm64", config=src.config(),
         progress=False)
    rec = Recorder()
    arm64 = multiarch["descs"]["arm64"]["digest"]
    assert push(partial, src.ref("multi:1"), dst.ref("copy/arm:1"), config=dst.config(),
                reporter=rec) == arm64
    assert any("pushing its manifest" in v for _, v in rec.kinds("message"))
    assert sha256(_inspect_raw(dst, "copy/arm:1")) == arm64


def test_push_errors(registry, source, store):
    reg = registry("plain")
    with pytest.raises(RegistryError) as e:
        push(store, "nothere:1", reg.ref("x:1"), config=reg.config(), progress=False)
    assert str(e.value) == "docker.io/library/nothere:1: no such image in the store"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ManifestError) as e:
        push(store, source["ref"], reg.ref(f"x@{wrong}"), config=reg.config(), progress=False)
    assert f"the image's digest is {source['digest']}" in str(e.value)
    assert_clean(store)


CONTAINERD_CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
"""


@pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("ctr"),
                    reason="containerd is not installed")
def test_ctr_pulls_what_we_pushed(registry, source, store):
    reg = registry("plain")
    push(store, source["ref"], reg.ref("forctr:1"), config=reg.config(), progress=False)
    d = tempfile.mkdtemp(prefix="imagetool-containerd-")
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(CONTAINERD_CONFIG.format(d=d))
    log = open(os.path.join(d, "log"), "wb")
    proc = subprocess.Popen(["containerd", "--config", os.path.join(d, "config.toml")],
                            stdout=log, stderr=log)
    try:
        ctr = ["ctr", "-a", os.path.join(d, "containerd.sock"), "-n", "imagetool-test"]
        for _ in range(100):
            if subprocess.run([*ctr, "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        p = subprocess.run([*ctr, "images", "pull", "--plain-http", reg.ref("forctr:1")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        p = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True)
        assert reg.ref("forctr:1") in p.stdout and source["digest"] in p.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def test_one_put_per_blob_largest_first(registry, source, store):
    """By default every blob goes up in a single PUT (POST, then PUT ?digest= with the whole
    body: no PATCH), the largest first."""
    reg = registry("plain")
    proxy = FaultProxy(("127.0.0.1", reg.port)).start()
    try:
        rec = Recorder()
        push(store, source["ref"], f"{proxy.host}/mono:1", config=reg.config(), reporter=rec,
             workers=1)
        m = store.read_json(source["digest"])
        blobs = sorted([m["config"], *m["layers"]], key=lambda d: -d["size"])
        assert [k for k, _ in rec.kinds("start")] == [d["digest"] for d in blobs]
        assert proxy.requests("PATCH") == []
        puts = proxy.requests("PUT", "/v2/mono/blobs/uploads/")
        assert [e.headers["Content-Length"] for e in puts] == [str(d["size"]) for d in blobs]
        assert all(f"digest={d['digest'].replace(':', '%3A')}" in e.path
                   for e, d in zip(puts, blobs, strict=True))
    finally:
        proxy.stop()
    assert _inspect_raw(reg, "mono:1") == store.read_blob(source["digest"])
