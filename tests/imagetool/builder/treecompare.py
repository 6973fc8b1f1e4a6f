"""File trees compared the way the builder's interop tests compare images: per path the type,
permission bits, owner and group, and a symlink's target or a file's sha256. Hard links read as
their target's contents; times are not compared (each builder stamps its own)."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile

# What `docker create` adds to every container's filesystem (its init layer), not the image's.
DOCKER_OWN = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab",
              "dev", "proc", "sys"}


def skipped(rel: str, skip: set[str]) -> bool:
    return rel in skip or rel.split("/")[0] in skip


def tree(root: str, skip: set[str] | None = None) -> dict[str, tuple]:
    """rel path -> (type, mode, uid, gid, symlink target or sha256 of the contents)."""
    skip = skip or set()
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if skipped(rel, skip):
                continue
            st = os.lstat(full)
            what: str | None = None
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, what)
        dirnames[:] = [x for x in dirnames
                       if not skipped(os.path.relpath(os.path.join(dirpath, x), root), skip)]
    return out


def tar_tree(path: str, skip: set[str]) -> dict[str, tuple]:
    """The same from a `docker export` tar (hard links resolved to their target's contents)."""
    out: dict[str, tuple] = {}
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        by_name = {m.name.strip("./").rstrip("/"): m for m in members}
        for m in members:
            rel = m.name.removeprefix("./").rstrip("/")
            if not rel or skipped(rel, skip):
                continue
            what: str | None = None
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK,
                    tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.CHRTYPE: stat.S_IFCHR,
                    tarfile.BLKTYPE: stat.S_IFBLK}.get(
                m.type, stat.S_IFREG if m.isreg() or m.islnk() else -1)
            if m.issym():
                what = m.linkname
            elif m.isreg() or m.islnk():
                target = by_name[m.linkname.removeprefix("./")] if m.islnk() else m
                f = tf.extractfile(target)
                assert f is not None
                what = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (kind, m.mode & 0o7777, m.uid, m.gid, what)
    return out


def diff_trees(a: dict[str, tuple], b: dict[str, tuple], who: str = "docker's") -> list[str]:
    out = [f"only ours: {k}" for k in sorted(a.keys() - b.keys())]
    out += [f"only {who}: {k}" for k in sorted(b.keys() - a.keys())]
    out += [f"{k}: ours {a[k]} {who} {b[k]}" for k in sorted(a.keys() & b.keys())
            if a[k] != b[k]]
    return out
