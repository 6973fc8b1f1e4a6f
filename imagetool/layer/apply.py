"""The applier: layer tarballs onto a directory with our own member loop (umoci's
oci/layer tar_extract in shape), never tarfile's extractall. See the package docstring for the
two targets (copy, overlay), the safety rules and the metadata applied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import BinaryIO

from .base import (
    DROPPED_XATTR_PREFIX,
    OPAQUE,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT,
    WHITEOUT_META,
    LayerError,
    UnsafeLayer,
)
from .resolve import Resolver, split_name
from .stream import Stream, pipeline
from .tarheader import CHR, DIR, FIFO, LNK, REGULAR, SYM, Entry, entries


@dataclass
class Stats:
    entries: int = 0
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    whiteouts: int = 0
    # directories made because an entry's parent was missing from the layer (relative paths);
    # overlay snapshots copy their metadata from the lower layers afterwards
    implicit_dirs: list[str] = field(default_factory=list)


def _rm(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for every
    thread)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o7777  # unknown: always chmod


class Applier:
    """Applies layer after layer onto `root` (one Applier per tree; one layer at a time)."""

    def __init__(self, root: str, overlay: bool = False, chown: bool | None = None,
                 owner: tuple[int, int] | None = None) -> None:
        """`owner`, if given, owns every entry instead of the tar's uid/gid (ADD --chown)."""
        self.root = os.path.realpath(root)
        self.overlay = overlay
        # opaque dirs: trusted.overlay.opaque, or user.overlay.opaque in a rootless store
        self.opaque_xattr = OVERLAY_OPAQUE_XATTR
        self.dropped_xattrs: tuple[str, ...] = (DROPPED_XATTR_PREFIX,)
        if overlay:
            from imagetool.rootless.paths import overlay_xattr_ns
            self.opaque_xattr = overlay_xattr_ns() + "overlay.opaque"
            self.dropped_xattrs = (DROPPED_XATTR_PREFIX, overlay_xattr_ns() + "overlay.")
        if chown is None:
            from imagetool.rootless.paths import can_chown
            chown = can_chown()
        self.chown = chown
        self.owner = owner
        self.umask = _umask()

    def apply(self, raw: BinaryIO, label: str = "layer", diff_id: str | None = None) -> Stats:
        """Apply one layer read from `raw` (compressed or not; a store blob reader checks its
        digest at EOF). Raises LayerError/UnsafeLayer; the tree is then half-applied and the
        caller must throw it away."""
        with pipeline(raw, label, diff_id) as stream:
            return _LayerRun(self, stream, label).run()


class _LayerRun:
    def __init__(self, ap: Applier, stream: Stream, label: str) -> None:
        self.ap = ap
        self.stream = stream
        self.label = label
        self.res = Resolver(ap.root, label)
        self.res.before_mkdir = self._touch_parent
        self.stats = Stats()
        self.dir_times: list[tuple[str, int, int]] = []
        self.parent_times: dict[str, tuple[int, int]] = {}
        self.added: set[str] = set()  # relative paths this layer wrote (copy mode)
        self._consumed = False
        self._last_parent: str | None = None

    def run(self) -> Stats:
        for e in entries(self.stream, self.label):
            self.stats.entries += 1
            try:
                self._entry(e)
            except LayerError:
                raise
            except FileNotFoundError as err:
                raise LayerError(f"{self.label}: {e.name}: {err.strerror}: "
                                 f"{err.filename or ''}") from None
            except (OSError, ValueError) as err:
                msg = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                raise LayerError(f"{self.label}: {e.name}: {msg}") from None
            if e.kind in REGULAR and e.size and not self._consumed:
                self.stream.skip(e.size)
        self._finish_times()
        self.stats.implicit_dirs = self.res.implicit
        return self.stats

    # -- helpers ------------------------------------------------------------------------------
    def _touch_parent(self, parent_path: str) -> None:
        """Remember a parent's times before a whiteout changes it, to restore them."""
        if parent_path not in self.parent_times:
            st = os.lstat(parent_path)
            self.parent_times[parent_path] = (st.st_atime_ns, st.st_mtime_ns)

    def _clear(self, path: str) -> None:
        """Remove whatever is at `path` (not following a symlink)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.res.forget()
        _rm(path, st)

    def _ids(self, e: Entry) -> tuple[int, int]:
        return self.ap.owner if self.ap.owner is not None else (e.uid, e.gid)

    def _owner(self, path: str | int, e: Entry) -> None:
        if self.ap.chown:
            os.chown(path, *self._ids(e), follow_symlinks=False)

    def _xattrs(self, target: str | int, e: Entry, symlink: bool = False) -> None:
        for k, v in e.xattrs.items():
            if k.startswith(self.ap.dropped_xattrs):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, k, v)
                else:
                    os.setxattr(target, k, v, follow_symlinks=False)
            except OSError as err:
                if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue
                if symlink and err.errno == errno.EPERM and k.startswith("user."):
                    continue  # user.* xattrs are not allowed on symlinks
                raise LayerError(f"{self.label}: {e.name}: setting xattr {k}: "
                                 f"{err.strerror}") from None

    # -- entries ------------------------------------------------------------------------------
    def _entry(self, e: Entry) -> None:
        self._consumed = False
        parts = split_name(e.name, self.label)
        if not parts:
            return self._root_entry(e)
        base = parts[-1]
        if base.startswith(WHITEOUT):
            return self._whiteout(e, parts)
        parent = self.res.directory(parts[:-1], True, e.name)
        if parent != self._last_parent:  # its times are put back at the end, as umoci does
            self._last_parent = parent
            self._touch_parent(self.res.host(parent))
        rel = f"{parent}/{base}" if parent else base
        path = self.res.host(rel)
        if not self.ap.overlay:
            self.added.add(rel)
        kind = e.kind
        if kind in REGULAR:
            self._file(e, path)
        elif kind == DIR:
            self._dir(e, path, rel, "/".join(parts))
        elif kind == SYM:
            self._symlink(e, path)
        elif kind == LNK:
            self._hardlink(e, path)
        else:
            self._node(e, path)

    def _root_entry(self, e: Entry) -> None:
        if e.kind != DIR:
            raise LayerError(f"{self.label}: {e.name!r} names the root but is not a directory")
        root = self.ap.root
        self._owner(root, e)
        os.chmod(root, e.mode & 0o7777)
        self._xattrs(root, e)
        self.dir_times.append((root, e.atime_ns, e.mtime_ns))

    def _file(self, e: Entry, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        perm = e.mode & 0o7777
        # open() gives perm & ~umask; chown clears setuid/setgid: chmod only when needed
        exact = not perm & (0o7000 | self.ap.umask)
        create = perm if exact else 0o600
        try:
            fd = os.open(path, flags, create)
        except FileExistsError:
            self._clear(path)
            fd = os.open(path, flags, create)
        try:
            if e.size:
                self.stream.copy(fd, e.size)
                self.stats.bytes += e.size
            self._consumed = True
            if self.ap.chown:
                os.fchown(fd, *self._ids(e))
            if not exact:
                os.fchmod(fd, perm)
            if e.xattrs:
                self._xattrs(fd, e)
            os.utime(fd, ns=(e.atime_ns, e.mtime_ns))
        finally:
            os.close(fd)
        self.stats.files += 1

    def _dir(self, e: Entry, path: str, rel: str, key: str) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                self._clear(path)
                os.mkdir(path, 0o700)
        self._owner(path, e)
        os.chmod(path, e.mode & 0o7777)
        if e.xattrs:
            self._xattrs(path, e)
        self.dir_times.append((path, e.atime_ns, e.mtime_ns))
        self.res.cache[key] = rel
        self.stats.dirs += 1

    def _symlink(self, e: Entry, path: str) -> None:
        if not e.linkname:
            raise LayerError(f"{self.label}: {e.name}: symlink with an empty target")
        try:
            os.symlink(e.linkname, path)
        except FileExistsError:
            self._clear(path)
            os.symlink(e.linkname, path)
        self._owner(path, e)
        if e.xattrs:
            self._xattrs(path, e, symlink=True)
        os.utime(path, ns=(e.atime_ns, e.mtime_ns), follow_symlinks=False)
        self.stats.symlinks += 1

    def _hardlink(self, e: Entry, path: str) -> None:
        tparts = split_name(e.linkname, self.label, f"hardlink {e.name} target")
        if not tparts:
            raise UnsafeLayer(f"{self.label}: hardlink {e.name} -> {e.linkname!r} names the "
                              "rootfs itself")
        try:
            tpath, tst = self.res.existing(tparts, e.name)
        except LayerError as err:
            if isinstance(err, UnsafeLayer):
                raise
            where = "this layer" if self.ap.overlay else "the rootfs"
            raise LayerError(f"{self.label}: hardlink {e.name} -> {e.linkname}: the target is "
                             f"not in {where}") from None
        if stat.S_ISDIR(tst.st_mode):
            raise LayerError(f"{self.label}: hardlink {e.name} -> {e.linkname}: the target is "
                             "a directory")
        if tpath == path:
            return
        try:
            os.link(tpath, path, follow_symlinks=False)
        except FileExistsError:
            st = os.lstat(path)
            if st.st_ino == tst.st_ino and st.st_dev == tst.st_dev:
                return
            self._clear(path)
            os.link(tpath, path, follow_symlinks=False)
        self.stats.hardlinks += 1

    def _node(self, e: Entry, path: str) -> None:
        kind = e.kind
        if kind == FIFO:
            fmt, dev = stat.S_IFIFO, 0
        else:
            fmt = stat.S_IFCHR if kind == CHR else stat.S_IFBLK
            dev = os.makedev(e.devmajor, e.devminor)
        try:
            os.mknod(path, fmt | 0o600, dev)
        except FileExistsError:
            self._clear(path)
            os.mknod(path, fmt | 0o600, dev)
        except PermissionError:
            raise LayerError(f"{self.label}: {e.name}: making a device node needs root "
                             "(CAP_MKNOD)") from None
        self._owner(path, e)
        os.chmod(path, e.mode & 0o7777)
        if e.xattrs:
            self._xattrs(path, e)
        os.utime(path, ns=(e.atime_ns, e.mtime_ns))
        self.stats.devices += 1

    def _whiteout(self, e: Entry, parts: list[str]) -> None:
        base = parts[-1]
        self.stats.whiteouts += 1
        if base.startswith(WHITEOUT_META) and base != OPAQUE:
            return
        parent = self.res.directory(parts[:-1], True, e.name)
        parent_path = self.res.host(parent)
        if base == OPAQUE:
            if self.ap.overlay:
                os.setxattr(parent_path, self.ap.opaque_xattr, b"y", follow_symlinks=False)
                return
            self._touch_parent(parent_path)
            prefix = f"{parent}/" if parent else ""
            for child in os.listdir(parent_path):
                if prefix + child not in self.added:
                    self._clear(f"{parent_path}/{child}")
            return
        victim = base[len(WHITEOUT):]
        if victim in ("", ".", "..") or "/" in victim:
            raise UnsafeLayer(f"{self.label}: whiteout {e.name!r} names {victim!r}; refusing it")
        path = f"{parent_path}/{victim}"
        if self.ap.overlay:
            self._clear(path)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            self._owner(path, e)
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self._touch_parent(parent_path)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.res.forget()
        _rm(path, st)
        self.added.discard(f"{parent}/{victim}" if parent else victim)

    def _finish_times(self) -> None:
        for path, (atime, mtime) in self.parent_times.items():
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        for path, atime, mtime in reversed(self.dir_times):
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def apply_file(root: str, path: str, overlay: bool = False, label: str | None = None,
               diff_id: str | None = None) -> Stats:
    """Apply the layer tarball at `path` (any compression) onto `root`."""
    with open(path, "rb") as f:
        return Applier(root, overlay).apply(f, label or os.path.basename(path), diff_id)

