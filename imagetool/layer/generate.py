"""The generator: an overlayfs upper directory -> an OCI layer (tar with whiteouts, gzipped
by isal, or zstd-compressed with `compression="zstd"`: media type ...tar+zstd).

overlayfs records what a container changed in its upper directory: new and modified entries
as themselves, a deletion as a 0:0 character device of the deleted name, and a directory
that replaced a lower one (`rm -rf d; mkdir d`) as a directory with the xattr
trusted.overlay.opaque="y". The layer gets `.wh.<name>` for a deletion and `d/.wh..wh..opq`
for an opaque directory, as the OCI image spec says. Entries are written in sorted order with
numeric owners and no user/group names; with `epoch` (SOURCE_DATE_EPOCH) every mtime is
clamped to it, so the same changes make the same bytes and the same digests."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from typing import Any

from imagetool import compression
from imagetool import mediatypes as mt

from .base import OPAQUE, WHITEOUT

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class _Sink:
    """tarfile writes here: hashed (diff_id) and compressed into a store ingest."""

    def __init__(self, out: Any, kind: str = "gzip") -> None:
        self.out = out
        self.gz = compression.writer(kind)
        self.diff = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self.out.write(self.gz.compress(data))
        return len(data)

    def finish(self) -> None:
        self.out.write(self.gz.flush())


def _opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _info(name: str, st: os.stat_result, epoch: int | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    mtime = int(st.st_mtime)
    ti.mtime = min(mtime, epoch) if epoch is not None else mtime
    return ti


def changes(upper: str) -> list[str]:
    """Every path in `upper` (relative, sorted, parents first)."""
    out: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        base = os.path.join(upper, rel) if rel else upper
        names = sorted(os.listdir(base))
        subdirs = []
        for n in names:
            r = f"{rel}/{n}" if rel else n
            out.append(r)
            if stat.S_ISDIR(os.lstat(os.path.join(upper, r)).st_mode):
                subdirs.append(r)
        stack.extend(reversed(subdirs))
    return out


LAYER_TYPES = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


def write_layer(store: Any, upper: str, *, epoch: int | None = None,
                compression: str = "gzip") -> tuple[dict[str, Any], str, int]:
    """Tar the upper dir into a layer blob in `store` compressed as `compression` (gzip or
    zstd): (descriptor, diff_id, entries)."""
    media_type = LAYER_TYPES.get(compression)
    if media_type is None:
        raise ValueError(f"cannot write {compression!r} layers (want gzip or zstd)")
    count = 0
    with store.ingest() as w:
        sink = _Sink(w, compression)
        with tarfile.open(fileobj=sink, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tf:
            links: dict[tuple[int, int], str] = {}
            for rel in changes(upper):
                path = os.path.join(upper, rel)
                st = os.lstat(path)
                mode = st.st_mode
                if stat.S_ISCHR(mode) and st.st_rdev == 0:
                    head, _, base = rel.rpartition("/")
                    ti = _info(f"{head}/{WHITEOUT}{base}" if head else WHITEOUT + base, st,
                               epoch)
                    ti.mode, ti.uid, ti.gid = 0o644, 0, 0
                    tf.addfile(ti)
                    count += 1
                    continue
                ti = _info(rel, st, epoch)
                if stat.S_ISDIR(mode):
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                    if _opaque(path):
                        op = _info(f"{rel}/{OPAQUE}", st, epoch)
                        op.mode, op.uid, op.gid = 0o644, 0, 0
                        tf.addfile(op)
                        count += 1
                elif stat.S_ISLNK(mode):
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = os.readlink(path)
                    tf.addfile(ti)
                elif stat.S_ISREG(mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in links:
                        ti.type = tarfile.LNKTYPE
                        ti.linkname = links[key]
                        tf.addfile(ti)
                    else:
                        links[key] = rel
                        ti.size = st.st_size
                        with open(path, "rb") as f:
                            tf.addfile(ti, f)
                elif stat.S_ISFIFO(mode):
                    ti.type = tarfile.FIFOTYPE
                    tf.addfile(ti)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                    ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                    tf.addfile(ti)
                else:
                    continue  # sockets are not carried in layers
                count += 1
        sink.finish()
        digest = w.commit()
        size = w.size
    return ({"mediaType": media_type, "digest": digest, "size": size},
            "sha256:" + sink.diff.hexdigest(), count)
