"""imagetool.layers: real tar layers (written by tarfile, gzip/zstd/plain) applied to real
directories as root: every entry kind with its metadata, whiteouts and opaque directories in
both targets (a merged rootfs, an overlayfs lower), and layers crafted to escape the rootfs,
which must be refused without touching anything outside it."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile

import pytest

from imagetool import layers

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")
pytestmark = needs_root
T0 = 1_600_000_000


def member(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None,
           uid: int = 0, gid: int = 0, mtime: float = T0, link: str = "",
           dev: tuple[int, int] = (0, 0), xattrs: dict[str, bytes] | None = None,
           pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
             "blk": tarfile.BLKTYPE, "sparse": tarfile.GNUTYPE_SPARSE}
    ti = tarfile.TarInfo(name)
    ti.type = types[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime, ti.linkname = uid, gid, mtime, link
    ti.devmajor, ti.devminor = dev
    ti.size = len(data) if kind == "file" else 0
    for k, v in (xattrs or {}).items():
        ti.pax_headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    ti.pax_headers.update(pax or {})
    return ti, (data if kind == "file" else None)


def tar(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def apply(root: str, data: bytes, overlay: bool = False) -> layers.Stats:
    return layers.Applier(root, overlay).apply(io.BytesIO(data), "test layer")


@pytest.fixture
def sandbox(tmp_path):
    """(root, outside): the rootfs and a sibling directory with a sentinel file that no layer
    may touch; `untouched()` checks everything in the sandbox but the rootfs is as it was."""
    box = tmp_path / "sandbox"
    root, outside = box / "root", box / "outside"
    root.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("host data\n")

    def snapshot() -> dict[str, tuple]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(box):
            if os.path.abspath(dirpath) == str(root):
                dirnames[:] = []
                continue
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                if p == str(root):
                    continue
                st = os.lstat(p)
                body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
                out[p] = (st.st_mode, st.st_nlink, st.st_mtime_ns, body)
        return out

    before = snapshot()

    class Box:
        def untouched(self) -> None:
            assert snapshot() == before, "something outside the rootfs changed"

    b = Box()
    b.root, b.outside, b.path = str(root), str(outside), str(box)
    return b


# -- entries and metadata ----------------------------------------------------------------------
def test_every_entry_kind_with_its_metadata(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    data = tar(
        member(".", "dir", mode=0o755, mtime=T0 + 1),
        member("bin", "dir", mode=0o755),
        member("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0,
               xattrs={"security.capability": cap}),
        member("bin/ping", data=b"elf", mode=0o755, xattrs={"user.note": b"hello"}),
        member("bin/link", "hardlink", link="bin/tool"),
        member("bin/open", data=b"o", mode=0o666),  # wider than the umask lets open() make
        member("bin/sh", "symlink", link="tool", uid=7, gid=8),
        member("home", "dir", mode=0o755),
        member("home/app", "dir", mode=0o2750, uid=1000, gid=1000, mtime=T0 + 5),
        member("home/app/notes", data=b"x" * 100_000, mode=0o600, uid=1000, gid=1000,
               pax={"mtime": f"{T0 + 3}.123456789"}),
        member("tmp", "dir", mode=0o1777),
        member("dev", "dir"),
        member("dev/null", "chr", mode=0o666, dev=(1, 3)),
        member("dev/loop9", "blk", mode=0o660, gid=6, dev=(7, 9)),
        member("run", "dir"),
        member("run/fifo", "fifo", mode=0o620, uid=3))
    st = apply(root, data)
    assert (st.files, st.dirs, st.symlinks, st.hardlinks, st.devices) == (4, 6, 1, 1, 3)

    def s(p: str) -> os.stat_result:
        return os.lstat(os.path.join(root, p))
    assert stat.S_IMODE(s("bin/tool").st_mode) == 0o4755  # setuid survives the chown
    assert stat.S_IMODE(s("bin/open").st_mode) == 0o666
    assert os.getxattr(os.path.join(root, "bin/tool"), "security.capability") == cap
    assert os.getxattr(os.path.join(root, "bin/ping"), "user.note") == b"hello"
    assert s("bin/link").st_ino == s("bin/tool").st_ino and s("bin/tool").st_nlink == 2
    assert os.readlink(os.path.join(root, "bin/sh")) == "tool"
    assert (s("bin/sh").st_uid, s("bin/sh").st_gid) == (7, 8)
    home = s("home/app")
    assert (stat.S_IMODE(home.st_mode), home.st_uid, home.st_gid) == (0o2750, 1000, 1000)
    notes = s("home/app/notes")
    assert (notes.st_uid, stat.S_IMODE(notes.st_mode), notes.st_size) == (1000, 0o600, 100_000)
    assert notes.st_mtime_ns == (T0 + 3) * 10**9 + 123456789
    # a directory's mtime is set after its contents were written
    assert home.st_mtime_ns == (T0 + 5) * 10**9
    assert s(".").st_mtime_ns == (T0 + 1) * 10**9
    assert stat.S_IMODE(s("tmp").st_mode) == 0o1777
    null, loop = s("dev/null"), s("dev/loop9")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and \
        os.minor(null.st_rdev) == 3 and stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev),
                                           loop.st_gid) == (7, 9, 6)
    fifo = s("run/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and (fifo.st_uid, stat.S_IMODE(fifo.st_mode)) == \
        (3, 0o620)
    assert s("bin/tool").st_mtime_ns == T0 * 10**9


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["pax", "gnu", "ustar"])
def test_compressions_and_tar_dialects(tmp_path, kind, fmt):
    """Long names (PAX path, GNU ././@LongLink, ustar prefix) and big ids (PAX, GNU
    base-256) come out the same whatever the compression."""
    deep = "/".join(f"directory-{i:02d}" for i in range(8))  # > 100 characters
    ms = [member("d", "dir"), member(f"d/{deep}", "dir"),
          member(f"d/{deep}/file", data=b"content\n", uid=1000),
          member("d/longlink", "symlink", link="x/" * 80 + "target")]
    if fmt != tarfile.USTAR_FORMAT:  # ustar has no way to say an id above 2097151
        ms.append(member("d/bigid", data=b"", uid=3_000_000_000, gid=4_000_000))
    if fmt == tarfile.USTAR_FORMAT:
        ms[1:] = [m for m in ms[1:] if m[0].name != "d/longlink"]
    raw = tar(*ms, fmt=fmt)
    if kind == "gzip":
        raw = gzip.compress(raw)
    elif kind == "zstd":
        import zstandard
        raw = zstandard.ZstdCompressor().compress(raw)
    root = str(tmp_path / "root")
    os.mkdir(root)
    apply(root, raw)
    with open(os.path.join(root, "d", deep, "file"), "rb") as f:
        assert f.read() == b"content\n"
    if fmt != tarfile.USTAR_FORMAT:
        assert os.readlink(os.path.join(root, "d/longlink")) == "x/" * 80 + "target"
        big = os.lstat(os.path.join(root, "d/bigid"))
        assert (big.st_uid, big.st_gid) == (3_000_000_000, 4_000_000)


def test_parse_header_matches_tarfile_and_checks_the_checksum():
    raw = tar(member("a/b", data=b"x", uid=5, gid=6, mode=0o640, mtime=T0))
    h = layers.parse_header(raw[:512])
    assert (h.name, h.uid, h.gid, h.mode, h.size, h.mtime, h.type) == \
        ("a/b", 5, 6, 0o640, 1, T0, b"0")
    bad = bytearray(raw[:512])
    bad[0] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        layers.parse_header(bytes(bad))


def test_layers_replace_and_merge_across_layers(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    apply(root, tar(member("a", "dir"), member("a/keep", data=b"1"), member("a/file",
                    data=b"old"), member("b", data=b"file that becomes a dir"),
                    member("c", "dir"), member("c/inner", data=b"gone with c"),
                    member("l", "symlink", link="a")))
    apply(root, tar(member("a", "dir", mode=0o700), member("a/file", data=b"new", mode=0o600),
                    member("b", "dir"), member("b/x", data=b"x"), member("c", data=b"now a file"),
                    member("l", data=b"a file, not the dir it pointed at")))
    assert open(os.path.join(root, "a/keep"), "rb").read() == b"1"
    assert open(os.path.join(root, "a/file"), "rb").read() == b"new"
    assert stat.S_IMODE(os.lstat(os.path.join(root, "a")).st_mode) == 0o700
    assert os.path.isdir(os.path.join(root, "b")) and os.path.isfile(os.path.join(root, "b/x"))
    assert open(os.path.join(root, "c"), "rb").read() == b"now a file"
    assert os.path.isfile(os.path.join(root, "l")) and not os.path.islink(
        os.path.join(root, "l"))
    assert sorted(os.listdir(os.path.join(root, "a"))) == ["file", "keep"]


def test_hardlink_across_layers_and_replacing_a_linked_file(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    apply(root, tar(member("f", data=b"shared"), member("g", "hardlink", link="f")))
    apply(root, tar(member("h", "hardlink", link="f"), member("g", data=b"g alone")))
    r = lambda p: open(os.path.join(root, p), "rb").read()  # noqa: E731
    assert (r("f"), r("g"), r("h")) == (b"shared", b"g alone", b"shared")
    assert os.lstat(os.path.join(root, "h")).st_ino == os.lstat(os.path.join(root, "f")).st_ino


def test_parent_directory_times_are_kept(tmp_path):
    """A layer that adds etc/x without listing etc/ leaves etc's times as they were, like
    umoci does."""
    root = str(tmp_path / "root")
    os.mkdir(root)
    apply(root, tar(member("etc", "dir", mtime=T0), member("etc/a", data=b"a")))
    apply(root, tar(member("etc/b", data=b"b"), member("etc/sub/c", data=b"c")))
    assert os.lstat(os.path.join(root, "etc")).st_mtime_ns == T0 * 10**9
    assert os.path.isfile(os.path.join(root, "etc/sub/c"))


# -- whiteouts ---------------------------------------------------------------------------------
def _base(root: str) -> None:
    apply(root, tar(member("a", "dir"), member("a/b", data=b"b"), member("a/c", data=b"c"),
                    member("d", "dir"), member("d/e", data=b"e"), member("o", "dir"),
                    member("o/old1", data=b"1"), member("o/olddir", "dir"),
                    member("o/olddir/x", data=b"x"), member("s", "symlink", link="d")))


def test_whiteouts_and_opaque_directories_in_a_rootfs(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    _base(root)
    st = apply(root, tar(member("a/.wh.b"), member(".wh.d"), member(".wh.s"),
                         member("o", "dir"), member("o/kept-before", data=b"k"),
                         member("o/.wh..wh..opq"), member("o/new", data=b"n"),
                         member("a/.wh.never-existed"), member("a/.wh..wh.plnk")))
    assert st.whiteouts == 6
    assert sorted(os.listdir(root)) == ["a", "o"]  # d and the symlink s are gone, not e/
    assert os.listdir(os.path.join(root, "a")) == ["c"]
    assert sorted(os.listdir(os.path.join(root, "o"))) == ["kept-before", "new"]


def test_whiteouts_in_overlay_format(tmp_path):
    root = str(tmp_path / "snap")
    os.mkdir(root)
    apply(root, tar(member("a/.wh.b"), member(".wh.d"), member("o", "dir"),
                    member("o/.wh..wh..opq"), member("o/new", data=b"n")), overlay=True)
    for p in ("a/b", "d"):
        st = os.lstat(os.path.join(root, p))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(root, "o"), "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(os.path.join(root, "o"))) == ["new"]


def test_overlay_lowers_give_the_same_tree_as_copy(tmp_path):
    """The two targets agree: the same two layers, merged by us or by overlayfs."""
    from imagetool import snapshots
    l1 = tar(member("a", "dir"), member("a/b", data=b"b"), member("a/c", data=b"c"),
             member("o", "dir", mode=0o750), member("o/old", data=b"1"), member("t", "dir",
                                                                                 mode=0o1777))
    l2 = tar(member("a/.wh.b"), member("o", "dir", mode=0o750), member("o/.wh..wh..opq"),
             member("o/new", data=b"n"), member("t/added", data=b"in an implied dir"))
    copy = str(tmp_path / "copy")
    os.mkdir(copy)
    apply(copy, l1)
    apply(copy, l2)
    s1, s2 = str(tmp_path / "lowers/1"), str(tmp_path / "lowers/2")
    os.makedirs(s1)
    os.makedirs(s2)
    apply(s1, l1, overlay=True)
    implied = apply(s2, l2, overlay=True).implicit_dirs
    assert implied == ["a", "t"]  # parents of a whiteout and of a file the layer did not list
    snapshots._inherit_dirs(s2, implied, [s1])
    upper, work, merged = (str(tmp_path / n) for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.mkdir(d)
    snapshots.mount_overlay([s1, s2], upper, work, merged)
    try:
        assert _tree(merged) == _tree(copy)
        assert stat.S_IMODE(os.lstat(os.path.join(merged, "t")).st_mode) == 0o1777
    finally:
        snapshots.unmount(merged)
    assert not snapshots.is_mountpoint(merged)


def _tree(root: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = hashlib.sha256(open(p, "rb").read()).hexdigest() \
                if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, body)
    return out


# -- refusing to escape ------------------------------------------------------------------------
ESCAPES = {
    "dotdot": [member("../outside/pwned", data=b"x")],
    "dotdot-inside-name": [member("a/../../outside/pwned", data=b"x")],
    "absolute": [member("/tmp/imagetool-escape-test", data=b"x")],
    "symlink-then-write": [member("evil", "symlink", link="../outside"),
                           member("evil/pwned", data=b"x")],
    "symlink-deep-dotdot": [member("a/b", "dir"), member("a/b/evil", "symlink",
                                                         link="../../../outside"),
                            member("a/b/evil/pwned", data=b"x")],
    "absolute-symlink-dotdot": [member("evil", "symlink", link="/../outside"),
                                member("evil/pwned", data=b"x")],
    "symlink-chain": [member("one", "symlink", link="two"), member("two", "symlink",
                                                                  link="three/.."),
                      member("three", "symlink", link=".."), member("one/outside/pwned",
                                                                     data=b"x")],
    "symlink-then-dir": [member("evil", "symlink", link="../outside"),
                         member("evil/newdir", "dir")],
    "symlink-then-symlink": [member("evil", "symlink", link="../outside"),
                             member("evil/secret", "symlink", link="/etc/passwd")],
    "hardlink-out": [member("h", "hardlink", link="../outside/secret")],
    "hardlink-absolute": [member("h", "hardlink", link="/etc/passwd")],
    "hardlink-through-symlink": [member("evil", "symlink", link="../outside"),
                                 member("h", "hardlink", link="evil/secret")],
    "whiteout-through-symlink": [member("evil", "symlink", link="../outside"),
                                 member("evil/.wh.secret")],
    "opaque-through-symlink": [member("evil", "symlink", link="../outside"),
                               member("evil/.wh..wh..opq")],
    "whiteout-dotdot": [member("a", "dir"), member("a/.wh..")],
    "device-through-symlink": [member("evil", "symlink", link="../outside"),
                               member("evil/null", "chr", dev=(1, 3))],
}


@pytest.mark.parametrize("overlay", [False, True], ids=["copy", "overlay"])
@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_escaping_entries_are_refused(sandbox, case, overlay):
    with pytest.raises(layers.UnsafeLayer, match="outside the rootfs|refusing"):
        apply(sandbox.root, tar(*ESCAPES[case]), overlay)
    sandbox.untouched()
    assert not os.path.exists("/tmp/imagetool-escape-test")


def test_escape_through_a_symlink_from_an_earlier_layer(sandbox):
    apply(sandbox.root, tar(member("usr", "dir"), member("usr/lib", "symlink",
                                                         link="../../outside")))
    with pytest.raises(layers.UnsafeLayer, match="usr/lib"):
        apply(sandbox.root, tar(member("usr/lib/pwned", data=b"x")))
    sandbox.untouched()


def test_symlinks_inside_the_rootfs_are_followed_inside_it(sandbox):
    """An absolute symlink means the rootfs's own path (as the container will see it), and a
    relative one may climb as long as it stays inside: both write inside the rootfs."""
    apply(sandbox.root, tar(
        member("real", "dir"), member("etc", "symlink", link=sandbox.outside),
        member("etc/hosts", data=b"inside"),
        member("lib", "symlink", link="usr/lib"), member("usr", "dir"), member("usr/lib", "dir"),
        member("lib/libc.so", data=b"elf"), member("real/up", "symlink", link="../usr"),
        member("real/up/share", "dir"),
        member("loose", "symlink", link="../../../../whatever")))  # never written through
    assert open(os.path.join(sandbox.root + sandbox.outside, "hosts")).read() == "inside"
    assert os.path.isfile(os.path.join(sandbox.root, "usr/lib/libc.so"))
    assert os.path.isdir(os.path.join(sandbox.root, "usr/share"))
    assert os.readlink(os.path.join(sandbox.root, "loose")) == "../../../../whatever"
    sandbox.untouched()


def test_an_existing_symlink_is_replaced_not_written_through(sandbox):
    secret = os.path.join(sandbox.outside, "secret")
    apply(sandbox.root, tar(member("link", "symlink", link=secret),
                            member("rel", "symlink", link="../outside/secret")))
    apply(sandbox.root, tar(member("link", data=b"replaced"), member("rel", data=b"replaced",
                                                                      mode=0o777)))
    assert open(os.path.join(sandbox.root, "link")).read() == "replaced"
    assert not os.path.islink(os.path.join(sandbox.root, "rel"))
    sandbox.untouched()


def test_hardlinks_to_a_symlink_link_the_symlink_itself(sandbox):
    apply(sandbox.root, tar(member("s", "symlink", link="../outside/secret"),
                            member("h", "hardlink", link="s")))
    assert os.readlink(os.path.join(sandbox.root, "h")) == "../outside/secret"
    sandbox.untouched()


# -- malformed layers --------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["truncated-data", "truncated-header", "garbage", "sparse",
                                  "hardlink-missing", "hardlink-dir", "file-as-parent",
                                  "bad-pax", "empty-symlink", "root-not-dir", "symlink-loop"])
def test_malformed_layers_are_refused(tmp_path, case):
    root = str(tmp_path / "root")
    os.mkdir(root)
    good = tar(member("a", data=b"x" * 5000))
    data = {
        "truncated-data": good[:1024],
        "truncated-header": good[:512] + good[512:5632] + good[5632:5632 + 100]
        if len(good) > 5632 else good[:700],
        "garbage": b"this is not a tar archive at all" * 40,
        "sparse": tar(member("s", "sparse"), fmt=tarfile.GNU_FORMAT),
        "hardlink-missing": tar(member("h", "hardlink", link="nope")),
        "hardlink-dir": tar(member("d", "dir"), member("h", "hardlink", link="d")),
        "file-as-parent": tar(member("f", data=b"x"), member("f/child", data=b"y")),
        "bad-pax": None,
        "empty-symlink": tar(member("s", "symlink", link="")),
        "root-not-dir": tar(member("./", data=b"x")),
        "symlink-loop": tar(member("a", "symlink", link="b"), member("b", "symlink", link="a"),
                            member("a/x", data=b"x")),
    }[case]
    if case == "bad-pax":
        ti, _ = member("p", pax={"size": "not-a-number"})
        data = tar((ti, b""))
    with pytest.raises(layers.LayerError) as err:
        apply(root, data)
    assert not isinstance(err.value, layers.UnsafeLayer)
    assert "test layer" in str(err.value)


def test_trusted_overlay_xattrs_from_a_layer_are_dropped(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    apply(root, tar(member("d", "dir", xattrs={"trusted.overlay.redirect": b"/etc",
                                               "trusted.overlay.opaque": b"y",
                                               "user.kept": b"1"})), overlay=True)
    names = os.listxattr(os.path.join(root, "d"))
    assert "user.kept" in names and not [n for n in names if n.startswith("trusted.overlay")]


def test_read_file_in_follows_symlinks_inside_only(sandbox):
    apply(sandbox.root, tar(member("etc", "dir"), member("etc/real", data=b"root:x:0:0\n"),
                            member("etc/passwd", "symlink", link="/etc/real"),
                            member("etc/group", "symlink", link="../../outside/secret")))
    assert layers.read_file_in(sandbox.root, "/etc/passwd") == b"root:x:0:0\n"
    assert layers.read_file_in(sandbox.root, "/etc/shadow") is None
    with pytest.raises(layers.UnsafeLayer):
        layers.read_file_in(sandbox.root, "/etc/group")


def test_deeply_nested_paths(tmp_path):
    """Deeply nested directories resolve without recursion: a tree 700 levels deep under a
    recursion limit of 300. (Not deeper: a leftover tree must stay removable by pytest's
    own cleanup, which recurses once per level.)"""
    root = str(tmp_path / "root")
    os.mkdir(root)
    depth = 700
    deep = "/".join(["d"] * depth)
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(300)
        try:
            apply(root, tar(member(f"{deep}/f", data=b"bottom"), member(f"{deep}/g",
                                                                         data=b"g")))
        finally:
            sys.setrecursionlimit(limit)
        assert sorted(os.listdir(os.path.join(root, deep))) == ["f", "g"]
    finally:
        subprocess.run(["rm", "-rf", root], check=True)
