"""`import ROOTFS.tar NAME`: a one-layer image whose diff_id is the tarball's own digest, that
OCI tools (oci-image-tool, umoci) accept, and that bad input never half-creates."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess

import pytest

from imagetool import mediatypes as mt
from imagetool.importer import ImportFailed, import_rootfs
from imagetool.registry.platform import host
from imagetool.store import REF_NAME, Store
from tests.imagetool.storehelp import rootfs_tar

NAME = "docker.io/library/busybox:latest"
needs_umoci = pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
needs_oit = pytest.mark.skipif(not shutil.which("oci-image-tool"),
                               reason="oci-image-tool not installed")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> str:
    return rootfs_tar(str(tmp_path_factory.mktemp("rootfs")))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_import_makes_a_one_layer_image(tmp_path, tarball):
    store = Store(str(tmp_path / "s"))
    desc = import_rootfs(store, tarball, NAME, cmd=["/bin/sh"], env=["PATH=/bin", "A=b=c"],
                         workdir="/root", message="from the test")
    raw = open(tarball, "rb").read()
    manifest = store.read_json(desc)
    assert manifest["mediaType"] == desc["mediaType"] == mt.OCI_MANIFEST
    [layer] = manifest["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP
    assert gzip.decompress(store.read_blob(layer["digest"], layer["size"])) == raw
    cfg = store.read_json(manifest["config"])
    h = host()
    assert (cfg["os"], cfg["architecture"]) == (h.os, h.architecture)
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [sha(raw)]}
    assert cfg["config"] == {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin", "A=b=c"],
                             "WorkingDir": "/root"}
    assert cfg["history"][0]["comment"] == "from the test"
    assert cfg["created"].endswith("Z")
    [entry] = store.list_images()
    assert entry["annotations"][REF_NAME] == NAME
    assert entry["platform"] == {"architecture": h.architecture, "os": h.os}
    assert store.ingest_files() == []


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2", "zstd"])
def test_compressed_tarballs_make_the_same_image(tmp_path, tarball, kind, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    raw = open(tarball, "rb").read()
    packed = {"gzip": lambda b: gzip.compress(b, mtime=0), "xz": lzma.compress,
              "bzip2": bz2.compress,
              "zstd": lambda b: __import__("zstandard").ZstdCompressor().compress(b)}[kind](raw)
    store = Store(str(tmp_path / "s"))
    plain = import_rootfs(store, tarball, "docker.io/library/plain:1")
    again = import_rootfs(store, tarball, "docker.io/library/again:1")
    assert again["digest"] == plain["digest"]  # reproducible with SOURCE_DATE_EPOCH
    other = import_rootfs(store, io.BytesIO(packed), "docker.io/library/packed:1")
    m_plain, m_other = store.read_json(plain), store.read_json(other)
    assert m_other["layers"] == m_plain["layers"]  # same tar in, same layer blob out
    c_plain, c_other = store.read_json(m_plain["config"]), store.read_json(m_other["config"])
    assert c_other["rootfs"] == c_plain["rootfs"] == {"type": "layers",
                                                      "diff_ids": [sha(raw)]}
    assert c_other["created"] == "2023-11-14T22:13:20Z"


@needs_oit
@needs_umoci
def test_an_imported_image_passes_oci_image_tool_and_umoci_unpacks_it(tmp_path, tarball):
    store = Store(str(tmp_path / "s"))
    import_rootfs(store, tarball, NAME, cmd=["/bin/echo", "hi"])
    ok = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref",
                         f"name={NAME}", store.root], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # umoci splits --image at the first colon, so a full reference works as the tag.
    bundle = str(tmp_path / "bundle")
    u = subprocess.run(["umoci", "unpack", "--image", f"{store.root}:{NAME}", bundle],
                       capture_output=True, text=True)
    assert u.returncode == 0, u.stderr
    rootfs = os.path.join(bundle, "rootfs")
    assert os.readlink(os.path.join(rootfs, "bin/sh")) == "busybox"
    out = subprocess.run([os.path.join(rootfs, "bin/busybox"), "echo", "unpacked"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "unpacked\n"
    with open(os.path.join(bundle, "config.json")) as f:
        assert json.load(f)["process"]["args"] == ["/bin/echo", "hi"]
    # The validator does bite: a flipped bit in the layer fails it.
    layer = store.read_json(store.list_images()[0])["layers"][0]["digest"]
    path = store.blob_path(layer)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    with open(path, "wb") as f:
        f.write(data)
    bad = subprocess.run(["oci-image-tool", "validate", "--type", "image", store.root],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "digest mismatch" in bad.stderr


def _snapshot(store: Store) -> tuple:
    blobs = sorted(os.listdir(os.path.join(store.blobs_dir, "sha256")))
    return blobs, open(store.index_path, "rb").read(), store.ingest_files()


@pytest.mark.parametrize("case", ["not-tar", "truncated", "empty", "missing", "bad-env",
                                  "bad-gzip"])
def test_bad_input_leaves_nothing_behind(tmp_path, tarball, case):
    store = Store(str(tmp_path / "s"))
    import_rootfs(store, tarball, NAME)
    before = _snapshot(store)
    raw = open(tarball, "rb").read()
    src = str(tmp_path / "input")
    content = {"not-tar": b"just some text\n" * 100, "truncated": raw[:len(raw) // 2],
               "empty": b"", "bad-env": raw,
               "bad-gzip": gzip.compress(raw, mtime=0)[:-5000]}.get(case)
    if content is not None:
        with open(src, "wb") as f:
            f.write(content)
    expect = {"not-tar": "not a valid tar", "truncated": "not a valid tar|truncated",
              "empty": "not a valid tar", "missing": "No such file",
              "bad-env": "want KEY=VALUE", "bad-gzip": "not a valid gzip"}[case]
    with pytest.raises(ImportFailed, match=expect):
        import_rootfs(store, src, "docker.io/library/broken:1",
                      env=["NOEQUALS"] if case == "bad-env" else None)
    assert _snapshot(store) == before
