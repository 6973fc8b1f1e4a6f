"""imagetool.layer.generate: a real overlayfs-format upper directory (whiteout devices, the
opaque xattr, hardlinks, a fifo) -> a layer blob in a real store, read back with tarfile and
applied with the applier."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from imagetool import compression
from imagetool import mediatypes as mt
from imagetool.layer import Applier
from imagetool.layer.generate import changes, write_layer
from imagetool.store import Store

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="whiteout devices and trusted.* xattrs need root")


def _upper(path) -> str:
    """An upper dir as overlayfs leaves it after `rm old; rm -rf d; mkdir d; ...`."""
    up = path / "upper"
    (up / "d").mkdir(parents=True)
    (up / "d" / "new").write_bytes(b"new\n")
    os.setxattr(up / "d", "trusted.overlay.opaque", b"y")
    (up / "f").write_bytes(b"data")
    os.chmod(up / "f", 0o4750)
    os.link(up / "f", up / "hard")
    os.symlink("f", up / "sym")
    os.mkfifo(up / "fifo")
    os.mknod(up / "old", 0o600 | 0o020000, os.makedev(0, 0))  # the whiteout of `old`
    for p in ("d/new", "f", "sym", "fifo", "old", "d", ""):
        os.utime(up / p, ns=(2_000_000_000 * 10**9,) * 2, follow_symlinks=False)
    return str(up)


def _members(store: Store, desc: dict) -> list[tarfile.TarInfo]:
    blob = store.read_blob(desc["digest"])
    _, plain = compression.open_any(io.BytesIO(blob))
    with tarfile.open(fileobj=io.BytesIO(plain.read()), mode="r:") as tf:
        return tf.getmembers()


def test_changes_lists_parents_first_in_sorted_order(tmp_path):
    for p in ("b/z", "b/a", "a"):
        (tmp_path / p).parent.mkdir(exist_ok=True)
        (tmp_path / p).write_text("")
    assert changes(str(tmp_path)) == ["a", "b", "b/a", "b/z"]


@needs_root
@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_whiteouts_opaque_dirs_and_links_become_oci_entries(tmp_path, kind):
    store = Store(str(tmp_path / "store"))
    desc, diff_id, count = write_layer(store, _upper(tmp_path), epoch=1_000_000_000,
                                       compression=kind)
    assert desc["mediaType"] == {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}[kind]
    got = {m.name: m for m in _members(store, desc)}
    assert sorted(got) == sorted(["d", "d/.wh..wh..opq", "d/new", "f", "fifo", "hard",
                                  ".wh.old", "sym"])
    assert count == len(got)
    assert got["hard"].islnk() and got["hard"].linkname == "f"
    assert got["sym"].issym() and got["sym"].linkname == "f"
    assert got["fifo"].isfifo() and got["f"].mode == 0o4750
    assert (got[".wh.old"].mode, got[".wh.old"].uid, got[".wh.old"].size) == (0o644, 0, 0)
    assert all(m.mtime == 1_000_000_000 for m in got.values())     # clamped to the epoch
    assert all(m.uname == m.gname == "" for m in got.values())
    blob = store.read_blob(desc["digest"])
    _, plain = compression.open_any(io.BytesIO(blob))
    assert diff_id == "sha256:" + hashlib.sha256(plain.read()).hexdigest()


@needs_root
def test_the_same_changes_make_the_same_blob(tmp_path):
    up = _upper(tmp_path)
    a = write_layer(Store(str(tmp_path / "s1")), up, epoch=5)
    b = write_layer(Store(str(tmp_path / "s2")), up, epoch=5)
    assert a == b


@needs_root
def test_a_generated_layer_applies_back_onto_its_lower_tree(tmp_path):
    store = Store(str(tmp_path / "store"))
    desc, diff_id, _ = write_layer(store, _upper(tmp_path))
    root = tmp_path / "rootfs"
    (root / "d").mkdir(parents=True)
    (root / "d" / "lower").write_text("hidden by the opaque dir")
    (root / "old").write_text("deleted")
    Applier(str(root)).apply(store.open_blob(desc["digest"]), "gen", diff_id)
    assert sorted(os.listdir(root)) == ["d", "f", "fifo", "hard", "sym"]
    assert os.listdir(root / "d") == ["new"]
    assert os.stat(root / "f").st_ino == os.stat(root / "hard").st_ino


def test_an_unknown_compression_is_refused_before_anything_is_written(tmp_path):
    store = Store(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="cannot write 'bzip2' layers"):
        write_layer(store, str(tmp_path), compression="bzip2")
    assert not os.path.exists(store.ingest_dir) or os.listdir(store.ingest_dir) == []
