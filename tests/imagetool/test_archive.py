"""save/load: OCI archives checked by oci-image-tool, umoci and skopeo; docker-save archives
checked by skopeo and by a real dockerd (`docker load` of ours, ours of `docker save`,
and docker's legacy layout without manifest.json). Loading bad archives changes nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from imagetool import archive
from imagetool import mediatypes as mt
from imagetool.archive.oci import CONTAINERD_NAME
from imagetool.importer import import_rootfs
from imagetool.store import REF_NAME, Store
from tests.imagetool.images import tar_bytes
from tests.imagetool.storehelp import (
    read_json,
    rootfs_tar,
    running_dockerd,
)

BUSYBOX = "docker.io/library/busybox:latest"
TWO = "localhost:5000/two/layers:1"
skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def two_layer_image(store: Store, base: dict) -> dict:
    """busybox's layer plus a small one: in docker format its first layer.tar is a symlink."""
    base_m = store.read_json(base)
    base_cfg = store.read_json(base_m["config"])
    extra = tar_bytes({"etc/motd": b"two layers\n"})
    gz = gzip.compress(extra, mtime=0)
    ldesc = {"mediaType": mt.OCI_LAYER_GZIP, "digest": store.put_bytes(gz), "size": len(gz)}
    cfg = dict(base_cfg, rootfs={"type": "layers",
                                 "diff_ids": base_cfg["rootfs"]["diff_ids"] + [sha(extra)]},
               history=base_cfg["history"] + [{"created_by": "add motd"}])
    cdesc = store.put_json(cfg, mt.OCI_CONFIG)
    return store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cdesc,
                           "layers": base_m["layers"] + [ldesc]}, mt.OCI_MANIFEST)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Store:
    """A store with busybox (imported) and a two-layer image sharing its layer."""
    d = tmp_path_factory.mktemp("src")
    store = Store(str(d / "store"))
    base = import_rootfs(store, rootfs_tar(str(d)), BUSYBOX, cmd=["/bin/sh"])
    store.set_image(TWO, two_layer_image(store, base))
    return store


def config_of(store: Store, name: str) -> tuple[str, list[str]]:
    """(image ID, diff_ids) of a stored image."""
    m = store.read_json(store.get_image(name))
    return m["config"]["digest"], store.read_json(m["config"])["rootfs"]["diff_ids"]


def extract(path: str, dest: str) -> str:
    os.makedirs(dest)
    subprocess.run(["tar", "-C", dest, "-xf", path], check=True)
    return dest


def run(*cmd: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    return p.stdout


def snapshot(store: Store) -> tuple:
    blobs = sorted(os.listdir(os.path.join(store.blobs_dir, "sha256")))
    return blobs, open(store.index_path, "rb").read(), store.ingest_files()


# -- OCI archives ------------------------------------------------------------------------------
def test_an_oci_archive_is_a_layout_peers_accept(tmp_path, src):
    out = str(tmp_path / "oci.tar")
    archive.save_to(src, [BUSYBOX, TWO], out, "oci")
    layout = extract(out, str(tmp_path / "layout"))
    run("oci-image-tool", "validate", "--type", "image", layout)
    entries = read_json(os.path.join(layout, "index.json"))["manifests"]
    assert [(e["annotations"][CONTAINERD_NAME], e["annotations"][REF_NAME]) for e in entries] \
        == [(BUSYBOX, "latest"), (TWO, "1")]
    # umoci wants `layout:tag` and matches ref.name; the archive carries the plain tag there
    # (containerd's and docker's convention), so `:latest` finds busybox.
    bundle = str(tmp_path / "bundle")
    run("umoci", "unpack", "--image", f"{layout}:latest", bundle)
    assert os.path.isfile(os.path.join(bundle, "rootfs/bin/busybox"))
    assert os.path.exists(os.path.join(bundle, "rootfs/etc/passwd"))
    # Saving is deterministic: the same images give the same bytes.
    again = str(tmp_path / "again.tar")
    archive.save_to(src, [BUSYBOX, TWO], again, "oci")
    assert open(again, "rb").read() == open(out, "rb").read()


@skopeo
def test_skopeo_reads_our_oci_archive(tmp_path, src):
    out = str(tmp_path / "oci.tar")
    archive.save_to(src, [BUSYBOX], out, "oci")
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{out}:latest"))
    assert info["Digest"] == src.get_image(BUSYBOX)["digest"]
    assert info["Layers"] == [d["digest"] for d in src.read_json(src.get_image(BUSYBOX))[
        "layers"]]


def test_oci_round_trip_keeps_digests(tmp_path, src):
    out = str(tmp_path / "oci.tar")
    archive.save_to(src, [BUSYBOX, TWO], out, "oci")
    dst = Store(str(tmp_path / "dst"))
    assert archive.load(dst, out) == [BUSYBOX, TWO]
    for name in (BUSYBOX, TWO):
        assert dst.get_image(name)["digest"] == src.get_image(name)["digest"]
    run("oci-image-tool", "validate", "--type", "image", dst.root)
    assert dst.ingest_files() == []


# -- docker-save archives ----------------------------------------------------------------------
def test_docker_format_round_trip_keeps_the_image_id(tmp_path, src):
    out = str(tmp_path / "docker.tar")
    archive.save_to(src, [BUSYBOX, TWO], out, "docker")
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
        links = [m for m in tf.getmembers() if m.issym()]
    assert "repositories" in names
    assert [e["RepoTags"] for e in manifest] == [["busybox:latest"],
                                                ["localhost:5000/two/layers:1"]]
    assert len(links) == 1 and links[0].name.endswith("/layer.tar")  # the shared layer
    dst = Store(str(tmp_path / "dst"))
    assert archive.load(dst, out) == [BUSYBOX, TWO]
    for name in (BUSYBOX, TWO):
        assert config_of(dst, name) == config_of(src, name)
    run("oci-image-tool", "validate", "--type", "image", dst.root)


def test_a_legacy_docker_archive_loads_from_repositories_and_v1_json(tmp_path, src):
    out = str(tmp_path / "docker.tar")
    archive.save_to(src, [TWO], out, "docker")
    legacy = str(tmp_path / "legacy.tar")
    without_manifest(out, legacy)
    dst = Store(str(tmp_path / "dst"))
    assert archive.load(dst, legacy) == [TWO]
    image_id, diff_ids = config_of(dst, TWO)
    assert diff_ids == config_of(src, TWO)[1]
    cfg = dst.read_json(image_id)
    assert cfg["config"]["Cmd"] == ["/bin/sh"]
    assert len(cfg["history"]) == 2


def without_manifest(path: str, out: str) -> None:
    """Docker's pre-1.10 layout: the same archive minus manifest.json."""
    with tarfile.open(path) as tin, tarfile.open(out, "w") as tout:
        for m in tin.getmembers():
            if m.name != "manifest.json":
                tout.addfile(m, tin.extractfile(m) if m.isreg() else None)


@skopeo
def test_skopeo_reads_our_docker_archive_and_we_read_skopeos(tmp_path, src):
    ours = str(tmp_path / "ours.tar")
    archive.save_to(src, [BUSYBOX], ours, "docker")
    image_id, diff_ids = config_of(src, BUSYBOX)
    info = json.loads(run("skopeo", "inspect", "--config", f"docker-archive:{ours}"))
    assert info["rootfs"]["diff_ids"] == diff_ids
    layout = str(tmp_path / "layout")
    run("skopeo", "copy", "-q", f"docker-archive:{ours}", f"oci:{layout}:latest")
    run("oci-image-tool", "validate", "--type", "image", layout)
    # ...and the other way: skopeo writes a docker archive from an OCI layout, we load it.
    theirs = str(tmp_path / "theirs.tar")
    run("skopeo", "copy", "-q", f"oci:{layout}:latest", f"docker-archive:{theirs}:busybox:latest")
    dst = Store(str(tmp_path / "dst"))
    assert archive.load(dst, theirs) == [BUSYBOX]
    assert config_of(dst, BUSYBOX) == (image_id, diff_ids)


# -- bad archives ------------------------------------------------------------------------------
def _rewrite(path: str, out: str, member_end: str, change) -> None:
    with tarfile.open(path) as tin, tarfile.open(out, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            if data is not None and m.name.endswith(member_end):
                data = change(data)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


def flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 1
    return bytes(b)


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_a_tampered_archive_changes_nothing(tmp_path, src, fmt):
    out = str(tmp_path / "a.tar")
    archive.save_to(src, [BUSYBOX, TWO], out, fmt)
    bad = str(tmp_path / "bad.tar")
    if fmt == "oci":
        layer = src.read_json(src.get_image(TWO))["layers"][-1]["digest"].split(":")[1]
        _rewrite(out, bad, layer, flip)
        expect = "hashes to"
    else:
        _rewrite(out, bad, "layer.tar", lambda d: d + b"\0" * 1024)
        expect = "diff_id"
    dst = Store(str(tmp_path / "dst"))
    archive.load(dst, out, "first")
    archive.load(dst, out, "twice")  # loading again is harmless
    dst.remove_image(TWO)
    dst.gc()
    before = snapshot(dst)
    with pytest.raises(archive.ArchiveError, match=expect):
        archive.load(dst, bad)
    assert snapshot(dst) == before


@pytest.mark.parametrize("content,expect", [
    (b"", "not a tar archive|neither"), (b"hello" * 300, "not a tar archive"),
    (tar_bytes({"x": b"1"}), "neither an OCI archive"),
    (tar_bytes({"manifest.json": b"{}"}), "lists no images"),
    (tar_bytes({"manifest.json": b'[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]}]'}),
     "no file 'c.json'"),
    (tar_bytes({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                "index.json": b'{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":'
                              b'"sha256:%s","size":3}]}' % (mt.OCI_MANIFEST.encode(),
                                                             b"0" * 64)}),
     "no name"),
])
def test_archives_that_are_not_images_are_refused(tmp_path, content, expect):
    path = str(tmp_path / "x.tar")
    with open(path, "wb") as f:
        f.write(content)
    dst = Store(str(tmp_path / "dst"))
    with pytest.raises(archive.ArchiveError, match=expect):
        archive.load(dst, path)
    assert dst.list_images() == [] and dst.ingest_files() == []


# -- a real dockerd ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerd():
    with running_dockerd() as d:
        yield d


def test_docker_loads_our_save_and_we_load_docker_save(tmp_path, src, dockerd):
    ours = str(tmp_path / "ours.tar")
    archive.save_to(src, [BUSYBOX, TWO], ours, "docker")
    out = dockerd.docker("load", "-i", ours).stdout.decode()
    assert "Loaded image: busybox:latest" in out and "localhost:5000/two/layers:1" in out
    for name, tag in ((BUSYBOX, "busybox:latest"), (TWO, "localhost:5000/two/layers:1")):
        [info] = json.loads(dockerd.docker("image", "inspect", tag).stdout)
        image_id, diff_ids = config_of(src, name)
        assert info["Id"] == image_id
        assert info["RootFS"]["Layers"] == diff_ids
    # docker's own save, of an image docker tagged itself, comes back to us intact
    dockerd.docker("tag", "busybox:latest", "retagged:by-docker")
    theirs = str(tmp_path / "theirs.tar")
    dockerd.docker("save", "-o", theirs, "retagged:by-docker", "localhost:5000/two/layers:1")
    dst = Store(str(tmp_path / "dst"))
    assert sorted(archive.load(dst, theirs)) == sorted(
        ["docker.io/library/retagged:by-docker", TWO])
    assert config_of(dst, "docker.io/library/retagged:by-docker") == config_of(src, BUSYBOX)
    assert config_of(dst, TWO) == config_of(src, TWO)
    run("oci-image-tool", "validate", "--type", "image", dst.root)
    # docker's legacy layout: the same archive without manifest.json
    legacy = str(tmp_path / "legacy.tar")
    without_manifest(theirs, legacy)
    old = Store(str(tmp_path / "old"))
    assert sorted(archive.load(old, legacy)) == sorted(
        ["docker.io/library/retagged:by-docker", TWO])
    assert config_of(old, TWO)[1] == config_of(src, TWO)[1]
    cfg = old.read_json(config_of(old, TWO)[0])
    assert cfg["config"]["Cmd"] == ["/bin/sh"] and cfg["os"] == "linux"
