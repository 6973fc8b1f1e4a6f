"""The local store: content-addressed blobs verified on read, ingest that publishes only
verified bytes, names in index.json, locking between processes, leases and GC."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from imagetool import mediatypes as mt
from imagetool.digest import DigestError
from imagetool.store import REF_NAME, ImageNotFound, IngestError, Store, StoreError
from tests.imagetool.images import tar_bytes
from tests.imagetool.storehelp import read_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(store: Store, files: dict[str, bytes]) -> dict:
    """A one-layer image put into the store blob by blob; returns its manifest descriptor."""
    layer = tar_bytes(files)
    gz = gzip.compress(layer, mtime=0)
    ldesc = {"mediaType": mt.OCI_LAYER_GZIP, "digest": store.put_bytes(gz), "size": len(gz)}
    cfg = store.put_json({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}, mt.OCI_CONFIG)
    return store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cfg,
                           "layers": [ldesc]}, mt.OCI_MANIFEST)


def child(script: str, *args: str, **kw) -> subprocess.Popen:
    """A Python process running `script` with the repository importable."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, **kw)


def test_blobs_are_content_addressed_and_verified_on_read(tmp_path):
    store = Store(str(tmp_path / "s"))
    d = store.put_bytes(b"hello")
    assert d == sha(b"hello")
    assert store.has_blob(d) and store.read_blob(d) == b"hello"
    assert store.blob_path(d) == str(tmp_path / "s/blobs/sha256" / d[7:])
    with open(store.blob_path(d), "wb") as f:  # bit rot on disk
        f.write(b"hellO")
    with pytest.raises(DigestError, match="hashes to"):
        store.read_blob(d)
    with store.open_blob(d) as r, pytest.raises(DigestError):
        while r.read(2):
            pass
    with pytest.raises(DigestError, match="size"):
        store.read_blob(d, size=4)


@pytest.mark.parametrize("bad", ["sha256:../../../etc/passwd", "sha256:" + "A" * 64,
                                 "md5:" + "0" * 32, "sha256:abc", "sha256/" + "0" * 64, ""])
def test_a_bad_digest_never_becomes_a_path(tmp_path, bad):
    store = Store(str(tmp_path / "s"))
    with pytest.raises(DigestError):
        store.blob_path(bad)
    with pytest.raises(DigestError):
        store.put_bytes(b"x", bad)
    assert store.ingest_files() == []


def test_ingest_publishes_only_verified_bytes(tmp_path):
    store = Store(str(tmp_path / "s"))
    with store.ingest() as w:
        w.write(b"abc")
        with pytest.raises(IngestError, match="hashes to"):
            w.commit(sha(b"abd"))
    with store.ingest() as w:
        w.write(b"abc")
        with pytest.raises(IngestError, match="expected 4"):
            w.commit(sha(b"abc"), 4)
    with store.ingest() as w:
        w.write(b"never committed")
        assert os.path.exists(w.path)
    assert store.ingest_files() == []
    assert not store.has_blob(sha(b"abc"))
    assert os.listdir(store.blobs_dir + "/sha256") == []
    with store.ingest() as w:
        w.write(b"ab")
        w.write(b"c")
        assert w.offset == 3
        assert w.commit(sha(b"abc"), 3) == sha(b"abc")
    assert store.put_bytes(b"abc", sha(b"abc")) == sha(b"abc")  # again: deduplicated
    assert oct(os.stat(store.blob_path(sha(b"abc"))).st_mode & 0o777) == "0o644"
    assert store.ingest_files() == []


def test_keyed_ingest_resumes_after_a_crash(tmp_path):
    root = str(tmp_path / "s")
    data = os.urandom(300_000)
    want = sha(data)
    p = child("""
        import os, sys
        from imagetool.store import Store
        w = Store(sys.argv[1]).ingest(key=sys.argv[2])
        w.write(bytes.fromhex(sys.stdin.read()))
        w._f.flush()
        os._exit(9)   # crash: no commit, no cleanup
    """, root, want, stdin=subprocess.PIPE)
    p.communicate(data[:100_000].hex().encode(), timeout=30)
    assert p.returncode == 9
    store = Store(root)
    assert len(store.ingest_files()) == 1
    with store.ingest(key=want) as w:
        assert w.offset == 100_000
        w.write(data[100_000:])
        assert w.commit(want, len(data)) == want
    assert store.read_blob(want) == data
    assert store.ingest_files() == []


def test_names_live_in_index_json(tmp_path):
    store = Store(str(tmp_path / "s"))
    a = make_image(store, {"a": b"1"})
    b = make_image(store, {"b": b"2"})
    store.set_image("docker.io/library/a:latest", a)
    store.set_image("docker.io/library/b:latest", b)
    store.set_image("docker.io/library/a:latest", b)  # re-point a name: one entry, new target
    index = read_json(store.index_path)
    assert read_json(store.layout_path) == {"imageLayoutVersion": "1.0.0"}
    assert index["schemaVersion"] == 2
    assert sorted((d["annotations"][REF_NAME], d["digest"]) for d in index["manifests"]) == [
        ("docker.io/library/a:latest", b["digest"]), ("docker.io/library/b:latest", b["digest"])]
    assert store.get_image("docker.io/library/a:latest")["digest"] == b["digest"]
    assert store.get_image("docker.io/library/zzz:latest") is None
    store.remove_image("docker.io/library/a:latest")
    assert [d["annotations"][REF_NAME] for d in store.list_images()] == [
        "docker.io/library/b:latest"]
    with pytest.raises(ImageNotFound, match="zzz"):
        store.remove_image("docker.io/library/zzz:latest")
    assert not [f for f in os.listdir(store.root) if f.startswith(".tmp")]


def test_a_name_never_points_at_a_partial_image(tmp_path):
    store = Store(str(tmp_path / "s"))
    desc = make_image(store, {"f": b"data"})
    layer = store.read_json(desc)["layers"][0]["digest"]
    os.unlink(store.blob_path(layer))
    before = open(store.index_path, "rb").read()
    with pytest.raises(StoreError, match=f"blob {layer}.*missing"):
        store.set_image("docker.io/library/x:latest", desc)
    with pytest.raises(StoreError, match="not a manifest or index"):
        store.set_image("docker.io/library/x:latest", {**desc, "mediaType": mt.OCI_CONFIG})
    with pytest.raises(StoreError, match="invalid digest"):
        store.set_image("docker.io/library/x:latest", {**desc, "digest": "sha256:zz"})
    assert open(store.index_path, "rb").read() == before


def test_the_store_will_not_write_into_a_foreign_directory(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an OCI image layout"):
        Store(str(d)).put_bytes(b"x")
    assert sorted(os.listdir(d)) == [".lock", "notes.txt"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old/oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(StoreError, match="imageLayoutVersion '2.0.0'"):
        Store(str(tmp_path / "old")).put_bytes(b"x")


WRITER = """
    import sys, time
    from imagetool.store import Store
    root, prefix, digest, size, start = sys.argv[1:6]
    store = Store(root)
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": int(size)}
    while time.time() < float(start):
        time.sleep(0.001)
    for i in range(40):
        store.set_image(f"docker.io/library/{prefix}:{i}", desc)
"""


def test_two_writers_at_once_lose_no_update(tmp_path):
    store = Store(str(tmp_path / "s"))
    desc = make_image(store, {"f": b"x"})
    start = str(time.time() + 1.0)
    procs = [child(WRITER, store.root, p, desc["digest"], str(desc["size"]), start)
             for p in ("left", "right")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    names = {d["annotations"][REF_NAME] for d in store.list_images()}
    assert len(names) == 80
    assert names == {f"docker.io/library/{p}:{i}" for p in ("left", "right") for i in range(40)}


def test_gc_removes_only_what_no_image_reaches(tmp_path):
    store = Store(str(tmp_path / "s"))
    a = make_image(store, {"shared": b"s", "a": b"1"})
    b = make_image(store, {"b": b"2"})
    idx = store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {**b, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": sha(b"not here"), "size": 8,
         "platform": {"os": "linux", "architecture": "arm64"}}]}, mt.OCI_INDEX)
    store.set_image("docker.io/library/a:1", a)
    store.set_image("docker.io/library/multi:1", idx)  # one child absent: still complete
    orphan = store.put_bytes(b"orphan")
    assert store.gc() == [orphan]
    reach_a = {a["digest"], *(d["digest"] for d in [store.read_json(a)["config"],
                                                     *store.read_json(a)["layers"]])}
    store.remove_image("docker.io/library/a:1")
    assert set(store.gc()) == reach_a
    assert store.gc() == []
    for d in (idx["digest"], b["digest"], store.read_json(b)["config"]["digest"]):
        assert store.has_blob(d)


def test_gc_waits_for_writers_holding_a_lease(tmp_path):
    store = Store(str(tmp_path / "s"))
    make_image(store, {"f": b"x"})
    p = child("""
        import sys
        from imagetool.store import Store
        s = Store(sys.argv[1])
        with s.lease():
            print(s.put_bytes(b"fetched, not yet named"), flush=True)
            sys.stdin.readline()
    """, store.root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        digest = p.stdout.readline().strip()
        assert store.has_blob(digest)
        assert store.gc(wait=False) == []  # the writer is mid-pull: hands off
        assert store.has_blob(digest)
        with store.lease(), pytest.raises(RuntimeError, match="wait forever"):
            store.gc()
    finally:
        p.communicate("done\n", timeout=30)
    assert digest in store.gc(wait=False)


def test_gc_sweeps_ingest_files_of_dead_writers_only(tmp_path):
    store = Store(str(tmp_path / "s"))
    make_image(store, {"f": b"x"})
    p = child("""
        import os, sys, time
        from imagetool.store import Store
        w = Store(sys.argv[1]).ingest()
        w.write(b"half a layer")
        w._f.flush()
        print(w.path, flush=True)
        time.sleep(60)
    """, store.root, stdout=subprocess.PIPE, text=True)
    dead = p.stdout.readline().strip()
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    p.stdout.close()
    with store.ingest() as live:
        live.write(b"in progress")
        old = time.time() - 7200
        os.utime(live.path, (old, old))
        store.gc()
        assert os.path.exists(dead)  # fresh: could be a writer between mkstemp and flock
        os.utime(dead, (old, old))
        store.gc()
        assert not os.path.exists(dead)
        assert os.path.exists(live.path)  # old but locked by a live writer
        live.write(b" and done")
        live.commit()
    assert store.ingest_files() == []
