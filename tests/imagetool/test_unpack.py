"""`imagetool unpack`: real images in a real store, unpacked by our CLI (copy and overlay
modes) and by umoci, compared file by file; refused and corrupt layers leave nothing behind;
the overlay mode's layer snapshots are made once and shared by every container."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import uuid

import pytest

from imagetool import bundle as bundles
from imagetool import mediatypes as mt
from imagetool import snapshots
from imagetool.store import Store
from tests.imagetool.images import compress, sha256
from tests.imagetool.storehelp import imagetool
from tests.imagetool.test_layers import member, tar
from tests.rig import make_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, mount)")
needs_umoci = pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
MEDIA = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}


def host_arch() -> str:
    from imagetool.importer import host_platform
    return host_platform()["architecture"]


def put_image(store: Store, layer_tars: list[tuple[bytes, str]], name: str,
              config: dict | None = None, diff_ids: list[str] | None = None,
              arch: str | None = None, tag: bool = True) -> dict:
    """An image of these (uncompressed tar, compression) layers, straight into the store."""
    with store.lease():
        descs = []
        for raw, kind in layer_tars:
            blob = compress(raw, kind)
            descs.append({"mediaType": MEDIA[kind], "digest": store.put_bytes(blob),
                          "size": len(blob)})
        cfg = {"architecture": arch or host_arch(), "os": "linux",
               "config": config if config is not None else {"Cmd": ["/bin/sh"]},
               "rootfs": {"type": "layers",
                          "diff_ids": diff_ids or [sha256(raw) for raw, _ in layer_tars]}}
        cdesc = store.put_json(cfg, mt.OCI_CONFIG)
        mdesc = store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                "config": cdesc, "layers": descs}, mt.OCI_MANIFEST)
        mdesc["platform"] = {"architecture": cfg["architecture"], "os": "linux"}
        if tag:
            store.set_image(name, mdesc)
    return mdesc


def busybox_tar(tmp: str) -> bytes:
    root = make_rootfs(os.path.join(tmp, f"bb-{uuid.uuid4().hex[:6]}"))
    os.chmod(os.path.join(root, "bin/busybox"), 0o755)
    path = root + ".tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(root, arcname=".")
    with open(path, "rb") as f:
        data = f.read()
    shutil.rmtree(root)
    os.unlink(path)
    return data


def rich_layers(tmp: str) -> list[tuple[bytes, str]]:
    """busybox, then a layer with every kind of entry, then one with whiteouts and an opaque
    directory: the cases umoci and we must agree on."""
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00" + bytes(12)
    l2 = tar(member("srv", "dir", mode=0o750, uid=1000, gid=1000, mtime=1_600_000_100),
             member("srv/app", data=b"#!/bin/sh\necho app\n", mode=0o4755, uid=1000, gid=100,
                    xattrs={"user.origin": b"test"}),
             member("srv/ping", data=b"elf", mode=0o755, xattrs={"security.capability": cap}),
             member("srv/app.link", "hardlink", link="srv/app"),
             member("srv/rel", "symlink", link="app"),
             member("srv/abs", "symlink", link="/bin/busybox"),
             member("srv/data", "dir", mode=0o2775, gid=1000),
             member("srv/data/big", data=os.urandom(300_000), mode=0o640),
             member("srv/fifo", "fifo", mode=0o600),
             member("srv/null", "chr", mode=0o666, dev=(1, 3)),
             member("srv/blk", "blk", mode=0o600, dev=(7, 200)),
             member("etc/motd", data=b"welcome\n"),
             member("old", "dir"), member("old/a", data=b"a"), member("old/sub", "dir"),
             member("old/sub/b", data=b"b"), member("gone", data=b"will be whited out"),
             member("tmp/cache", "dir", mode=0o700))
    l3 = tar(member(".wh.gone"), member("old", "dir", mode=0o755),
             member("old/.wh..wh..opq"), member("old/fresh", data=b"fresh"),
             member("srv/.wh.rel"), member("etc/motd", data=b"replaced\n", mode=0o600),
             member("bin/.wh.vi"))
    return [(busybox_tar(tmp), "gzip"), (l2, "none"), (l3, "gzip")]


def tree(root: str) -> tuple[dict[str, tuple], list[list[str]]]:
    """Everything a rootfs comparison needs: per path type, permissions, owner, content hash
    or link target or device, xattrs, mtime; and the hardlink groups."""
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            m = st.st_mode
            if stat.S_ISREG(m):
                with open(p, "rb") as f:
                    what: object = hashlib.sha256(f.read()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(m):
                what = os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                what = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                what = None
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False)
                      for k in os.listxattr(p, follow_symlinks=False)}
            out[rel] = (stat.S_IFMT(m), None if stat.S_ISLNK(m) else stat.S_IMODE(m),
                        st.st_uid, st.st_gid, what, xattrs, st.st_mtime_ns)
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


@pytest.fixture
def made(tmp_path):
    """Bundle paths a test makes; overlays are unmounted at the end, also on failure."""
    paths: list[str] = []
    yield paths
    for p in paths:
        rootfs = os.path.join(p, "rootfs")
        if os.path.isdir(rootfs) and snapshots.is_mountpoint(rootfs):
            snapshots.unmount(rootfs)
    with open("/proc/self/mountinfo") as f:
        left = [line.split()[4] for line in f if str(tmp_path) in line.split()[4]]
    assert not left, f"mounts left behind: {left}"


def unpack(store: Store, name: str, path: str, *args: str, check: bool = True):
    return imagetool(store.root, "unpack", *args, name, path, check=check)


# -- interop with umoci ------------------------------------------------------------------------
@needs_umoci
@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_same_rootfs_as_umoci(tmp_path, store, made, mode):
    name = "docker.io/library/rich:latest"
    put_image(store, rich_layers(str(tmp_path)), name)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    made.append(ours)
    unpack(store, name, ours, "--mode", mode)
    u = subprocess.run(["umoci", "unpack", "--image", f"{store.root}:{name}", theirs],
                       capture_output=True, text=True, timeout=300)
    assert u.returncode == 0, u.stderr
    mine, uma = tree(os.path.join(ours, "rootfs")), tree(os.path.join(theirs, "rootfs"))
    diff = {k: (mine[0].get(k), uma[0].get(k)) for k in set(mine[0]) | set(uma[0])
            if mine[0].get(k) != uma[0].get(k)}
    assert not diff
    assert mine[1] == uma[1] == [["srv/app", "srv/app.link"]]
    # the cases are really in there
    assert "gone" not in mine[0] and "srv/rel" not in mine[0] and "bin/vi" not in mine[0]
    assert sorted(k for k in mine[0] if k.startswith("old/")) == ["old/fresh"]
    assert mine[0]["srv/app"][1] == 0o4755 and mine[0]["srv/null"][4] == (1, 3)


@needs_umoci
def test_an_image_umoci_built_unpacks_like_umoci_unpacks_it(tmp_path, store, busybox_oci):
    from imagetool import archive
    layout = str(tmp_path / "layout.tar")
    with tarfile.open(layout, "w") as tf:
        tf.add(busybox_oci, arcname=".")
    (name,) = archive.load(store, layout)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    unpack(store, name, ours)
    subprocess.run(["umoci", "unpack", "--image", f"{busybox_oci}:latest", theirs], check=True,
                   capture_output=True, timeout=300)
    assert tree(os.path.join(ours, "rootfs")) == tree(os.path.join(theirs, "rootfs"))
    cfg = json.load(open(os.path.join(ours, "config.json")))
    assert cfg["process"]["args"] == ["/bin/sh"] and cfg["root"]["path"] == "rootfs"


# -- refusing, and leaving nothing behind ------------------------------------------------------
def _escape_layers(target: str) -> list[tuple[bytes, str]]:
    good = tar(member("ok", "dir"), member("ok/file", data=b"fine"))
    bad = tar(member("ok/evil", "symlink", link="../" * 30 + target.lstrip("/")),
              member("ok/evil/pwned", data=b"x"))
    return [(good, "gzip"), (bad, "gzip")]


@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("case", ["symlink", "dotdot", "absolute", "hardlink"])
def test_a_refused_layer_leaves_nothing_behind(tmp_path, store, made, mode, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    layers_ = {
        "symlink": _escape_layers(str(outside)),
        "dotdot": [(tar(member("a", "dir"), member("a/../../outside/pwned", data=b"x")),
                    "gzip")],
        "absolute": [(tar(member(str(outside / "pwned"), data=b"x")), "none")],
        "hardlink": [(tar(member("h", "hardlink", link="../" * 20 + str(outside / "secret"))),
                      "gzip")],
    }[case]
    name = f"docker.io/library/evil-{case}:latest"
    put_image(store, layers_, name)
    path = str(tmp_path / "bundle")
    made.append(path)
    p = unpack(store, name, path, "--mode", mode, check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.startswith("imagetool: unpack: layer sha256:") and "outside the rootfs" in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(path)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "host\n"
    snaps = snapshots.Snapshots(store.root)
    assert snaps.list() == []  # not even the good layer of the image
    assert not os.path.isdir(snaps.tmp) or os.listdir(snaps.tmp) == []


@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("fault", ["blob", "diff_id", "truncated"])
def test_corrupt_layers_are_refused_and_leave_nothing(tmp_path, store, made, mode, fault):
    raw = tar(member("a", data=os.urandom(200_000)), member("b", data=b"b"))
    name = "docker.io/library/corrupt:latest"
    if fault == "truncated":
        raw = raw[:150_000]
    diff = ["sha256:" + "0" * 64] if fault == "diff_id" else None
    m = put_image(store, [(raw, "gzip")], name, diff_ids=diff)
    if fault == "blob":
        layer = store.read_json(m)["layers"][0]["digest"]
        path = store.blob_path(layer)
        data = bytearray(open(path, "rb").read())
        data[-20] ^= 0xFF  # inside the deflate stream's trailer: gzip still reads it
        with open(path, "wb") as f:
            f.write(data)
    path = str(tmp_path / "bundle")
    os.mkdir(path)  # an existing empty bundle dir is used, and left empty on failure
    made.append(path)
    p = unpack(store, name, path, "--mode", mode, check=False)
    assert p.returncode == 1, p.stderr
    msg = {"blob": "hashes to|CRC|crc|invalid|Error", "diff_id": "not its diff_id",
           "truncated": "truncated"}[fault]
    assert any(w in p.stderr.decode() for w in msg.split("|")), p.stderr
    assert os.listdir(path) == []
    assert snapshots.Snapshots(store.root).list() == []


def test_bundle_must_be_new_or_empty(tmp_path, store):
    name = "docker.io/library/tiny:latest"
    put_image(store, [(tar(member("f", data=b"x")), "gzip")], name)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    p = unpack(store, name, str(full), check=False)
    assert p.returncode == 1 and b"exists and is not empty" in p.stderr
    assert os.listdir(full) == ["keep"]
    p = unpack(store, "docker.io/library/nope:latest", str(tmp_path / "b"), check=False)
    assert p.returncode != 0 and not os.path.exists(tmp_path / "b")


def test_an_index_unpacks_this_hosts_platform(tmp_path, store):
    other = "arm64" if host_arch() != "arm64" else "amd64"
    mine = put_image(store, [(tar(member("which", data=b"host")), "gzip")], "x", tag=False)
    theirs = put_image(store, [(tar(member("which", data=b"other")), "gzip")], "y",
                       arch=other, tag=False)
    with store.lease():
        idx = store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                              "manifests": [theirs, mine]}, mt.OCI_INDEX)
        store.set_image("docker.io/library/multi:latest", idx)
    unpack(store, "multi", str(tmp_path / "b"))
    assert (tmp_path / "b/rootfs/which").read_bytes() == b"host"


# -- overlay: a layer cache ----------------------------------------------------------------------
def test_second_overlay_container_copies_nothing(tmp_path, store, made):
    name = "docker.io/library/rich:latest"
    put_image(store, rich_layers(str(tmp_path)), name)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    made += [one, two]
    unpack(store, name, one, "--mode", "overlay")
    snaps = snapshots.Snapshots(store.root)
    meta = json.load(open(os.path.join(one, "imagetool.json")))
    assert meta["mode"] == "overlay" and snaps.list() == sorted(meta["layers"])
    # layers hold world-writable dirs (/tmp): only root may reach the snapshots
    assert stat.S_IMODE(os.lstat(snaps.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(os.path.join(snaps.path(meta["layers"][0]), "tmp")).st_mode) \
        == 0o1777
    stamp = {d: (os.lstat(snaps.path(d)).st_ino, os.lstat(snaps.path(d)).st_mtime_ns,
                 sum(len(f) for _, _, f in os.walk(snaps.path(d)))) for d in snaps.list()}
    unpack(store, name, two, "--mode", "overlay")
    assert {d: (os.lstat(snaps.path(d)).st_ino, os.lstat(snaps.path(d)).st_mtime_ns,
                sum(len(f) for _, _, f in os.walk(snaps.path(d)))) for d in snaps.list()} == stamp
    for b in (one, two):
        assert os.listdir(os.path.join(b, "overlay/upper")) == []  # nothing copied up
    # the same inode of the same snapshot serves both containers
    base = snaps.path(meta["layers"][0])
    inode = os.lstat(os.path.join(base, "bin/busybox")).st_ino
    for b in (one, two):
        assert os.lstat(os.path.join(b, "rootfs/bin/busybox")).st_ino == inode
    # writes stay in each container's upper
    with open(os.path.join(one, "rootfs/etc/motd"), "w") as f:
        f.write("one's\n")
    assert open(os.path.join(two, "rootfs/etc/motd")).read() == "replaced\n"
    assert open(os.path.join(one, "overlay/upper/etc/motd")).read() == "one's\n"
    # remove() unmounts and deletes; the snapshots stay for the next container
    bundles.remove(one)
    assert not os.path.exists(one) and snaps.list() == sorted(meta["layers"])


def test_concurrent_overlay_unpacks_extract_each_layer_once(tmp_path, store, made):
    name = "docker.io/library/rich:latest"
    put_image(store, rich_layers(str(tmp_path)), name)
    paths = [str(tmp_path / f"c{i}") for i in range(3)]
    made += paths
    results: list[int] = []

    def go(p: str) -> None:
        results.append(unpack(store, name, p, "--mode", "overlay", check=False).returncode)
    threads = [threading.Thread(target=go, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0, 0]
    snaps = snapshots.Snapshots(store.root)
    assert len(snaps.list()) == 3 and os.listdir(snaps.tmp) == []
    trees = [tree(os.path.join(p, "rootfs")) for p in paths]
    assert trees[0] == trees[1] == trees[2]


def test_crashed_extraction_leftovers_are_swept(tmp_path, store, made):
    name = "docker.io/library/tiny:latest"
    m = put_image(store, [(tar(member("f", data=b"x")), "gzip")], name)
    digest = store.read_json(m)["layers"][0]["digest"]
    snaps = snapshots.Snapshots(store.root)
    stale = os.path.join(snaps.tmp, digest.split(":")[1] + ".deadbeef")
    os.makedirs(os.path.join(stale, "half"))
    path = str(tmp_path / "b")
    made.append(path)
    unpack(store, name, path, "--mode", "overlay")
    assert os.listdir(snaps.tmp) == [] and snaps.list() == [digest]
    assert snaps.prune(set()) == []  # mounted: kept
    bundles.remove(path)
    assert snaps.prune(set()) == [digest] and snaps.list() == []


def test_overlay_bundle_paths_with_commas_and_colons(tmp_path, store, made):
    """overlayfs splits its options at ',' and ':'; such a bundle path must still work."""
    name = "docker.io/library/tiny:latest"
    m = put_image(store, [(tar(member("f", data=b"x")), "gzip"), (tar(member("g", data=b"y")),
                                                                 "gzip")], name)
    path = str(tmp_path / "odd,name:with\\chars")
    made.append(path)
    unpack(store, name, path, "--mode", "overlay")
    rootfs = os.path.join(path, "rootfs")
    assert sorted(os.listdir(rootfs)) == ["f", "g"]
    with open(os.path.join(rootfs, "new"), "w") as f:
        f.write("z")
    assert os.path.isfile(os.path.join(path, "overlay/upper/new"))
    snaps = snapshots.Snapshots(store.root)
    layers_ = {d["digest"] for d in store.read_json(m)["layers"]}
    assert layers_ <= snapshots.mounted_lowers(snaps)
    bundles.remove(path)
    assert not os.path.exists(path)


def test_prune_removes_snapshots_no_image_or_overlay_uses(tmp_path, store, made):
    shared = (tar(member("s", data=b"shared")), "gzip")
    ma = put_image(store, [shared, (tar(member("a", data=b"a")), "gzip")],
                   "docker.io/library/a:latest")
    mb = put_image(store, [shared, (tar(member("b", data=b"b" * 5000)), "gzip")],
                   "docker.io/library/b:latest")
    la = [d["digest"] for d in store.read_json(ma)["layers"]]
    lb = [d["digest"] for d in store.read_json(mb)["layers"]]
    pa, pb = str(tmp_path / "a"), str(tmp_path / "b")
    made.extend([pa, pb])
    unpack(store, "docker.io/library/a:latest", pa, "--mode", "overlay")
    unpack(store, "docker.io/library/b:latest", pb, "--mode", "overlay")
    bundles.remove(pb)
    snaps = snapshots.Snapshots(store.root)
    assert snaps.list() == sorted({*la, *lb})
    # every image still names its layers: nothing to do
    assert imagetool(store.root, "prune").stdout.decode().splitlines() == \
        ["Total reclaimed space: 0B"]
    store.remove_image("docker.io/library/b:latest")
    out = imagetool(store.root, "prune").stdout.decode().splitlines()
    assert f"Deleted snapshot: {lb[1]}" in out  # b's own layer: no image, no overlay
    assert f"Deleted snapshot: {la[0]}" not in out  # shared with a
    assert out[-1] != "Total reclaimed space: 0B"
    assert snaps.list() == sorted(la)
    store.remove_image("docker.io/library/a:latest")
    out = imagetool(store.root, "prune").stdout.decode()
    assert "snapshot" not in out and snaps.list() == sorted(la)  # a's overlay is mounted
    bundles.remove(pa)
    out = imagetool(store.root, "prune").stdout.decode().splitlines()
    assert sorted(x for x in out if x.startswith("Deleted snapshot: ")) == \
        sorted(f"Deleted snapshot: {d}" for d in la)
    assert snaps.list() == []
