"""The in-root path resolver: paths inside a root resolved the way a chrooted process sees them.

Every component is lstat'ed; an absolute symlink restarts at the root, a relative one continues
from its directory, and a `..` that would climb above the root is refused (UnsafeLayer): the
shared resolver's refuse mode (runtime/linux/inroot.py), strict about directories, with this
module's errors, cache and implicit directories. The last component of an entry is never
followed. `read_file_in` reads a file of a rootfs (e.g.
/etc/passwd) with every symlink followed inside it only.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from runtime.linux.inroot import REFUSE, Escape, InRoot, InRootError, TooManyLinks

from .base import LayerError, UnsafeLayer

MAX_LINKS = 40  # symlinks followed while resolving one path, as the kernel allows


def split_name(name: str, label: str = "layer", what: str = "entry") -> list[str]:
    """A tar name as path components; absolute names and `..` are refused."""
    if name.startswith("/"):
        raise UnsafeLayer(f"{label}: {what} {name!r} is an absolute path; refusing an entry "
                          "that would land outside the rootfs")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise UnsafeLayer(f"{label}: {what} {name!r} contains '..'; refusing an entry that "
                          "would land outside the rootfs")
    if any("\0" in p for p in parts):
        raise LayerError(f"{label}: {what} {name!r} contains a NUL byte")
    return parts


class Resolver:
    """Paths inside `root` resolved like a chroot would, without ever leaving it: the shared
    resolver (runtime/linux/inroot.py) in refuse mode and strict (every component lstat'ed;
    symlinks followed inside the root; a `..` above the root is refused; what a path goes
    through must be a directory). Resolved directories are cached (keyed by the unresolved
    path) until a directory or symlink is removed."""

    def __init__(self, root: str, label: str = "layer") -> None:
        self.root = os.path.realpath(root)
        self.label = label
        self.cache: dict[str, str] = {"": ""}
        self.implicit: list[str] = []
        self.before_mkdir: Any = None  # called with a parent's host path before mkdir in it
        self._entry = ""
        self._create = False  # directory(): make missing directories
        self._file = False    # follow(): a missing last component is FileNotFoundError
        self._walk = InRoot(self.root, mode=REFUSE, max_links=MAX_LINKS, strict=True,
                            on_missing=self._missing)

    def host(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def forget(self) -> None:
        self.cache = {"": ""}

    def directory(self, parts: list[str], create: bool, entry: str) -> str:
        """The resolved relative path of the directory `parts`, made (0755, root) if missing
        and `create`; LayerError if it is missing (not `create`) or not a directory."""
        key = "/".join(parts)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        self._entry, self._create, self._file = entry, create, False
        self._walk.links = 0
        # from the longest prefix already resolved, one component at a time
        i = len(parts) - 1
        while i > 0 and "/".join(parts[:i]) not in self.cache:
            i -= 1
        rel = self.cache["/".join(parts[:i])]
        try:
            for j in range(i, len(parts)):
                rel = self._walk.step(rel, parts[j], dir_last=True)
                self.cache["/".join(parts[:j + 1])] = rel
        except InRootError as e:
            raise self._error(e) from None
        return rel

    def _missing(self, parent: str, name: str, at_end: bool) -> None:
        rel = f"{parent}/{name}" if parent else name
        if self._file and at_end:
            raise FileNotFoundError(2, "No such file or directory", self.host(rel))
        if not self._create:
            raise LayerError(f"{self.label}: {self._entry}: /{rel} does not exist")
        if self.before_mkdir is not None:
            self.before_mkdir(self.host(parent))
        os.mkdir(self.host(rel), 0o755)
        self.implicit.append(rel)

    def _error(self, e: InRootError) -> LayerError:
        """The shared resolver's error in this module's words; a symlink that ends a path
        follow() reads is worded as a file's."""
        where = f"{self.label}: {self._entry}"
        as_file = self._file and e.at_end
        if isinstance(e, Escape):
            if as_file:
                return UnsafeLayer(f"{where}: the symlink /{e.link} -> {e.target} leads "
                                   "outside the rootfs")
            return UnsafeLayer(f"{where}: goes through the symlink /{e.link} -> {e.target}, "
                               "which leads outside the rootfs; refusing it")
        if isinstance(e, TooManyLinks):
            return LayerError(f"{where}: too many "
                              f"{'symbolic links' if as_file else 'levels of symbolic links'}")
        return LayerError(f"{where}: /{e.rel} is not a directory")

    def existing(self, parts: list[str], entry: str) -> tuple[str, os.stat_result]:
        """(host path, lstat) of an existing entry; its last component is not followed."""
        if not parts:
            return self.root, os.lstat(self.root)
        parent = self.directory(parts[:-1], False, entry)
        rel = f"{parent}/{parts[-1]}" if parent else parts[-1]
        path = self.host(rel)
        try:
            return path, os.lstat(path)
        except FileNotFoundError:
            raise LayerError(f"{self.label}: {entry}: /{rel} does not exist") from None

    def follow(self, path: str, entry: str) -> str:
        """The host path of `path` (absolute inside the root) with every symlink followed,
        the last one too, never leaving the root. For reading files like /etc/passwd.
        FileNotFoundError if the last component is missing."""
        parts = split_name(path.lstrip("/"), self.label, "path")
        if not parts:
            return self.root
        parent = self.directory(parts[:-1], False, entry)
        self._entry, self._create, self._file = entry, False, True
        self._walk.links = 0
        try:
            return self.host(self._walk.step(parent, parts[-1]))
        except InRootError as e:
            raise self._error(e) from None
        finally:
            self._file = False


def read_file_in(root: str, path: str, limit: int = 4 << 20) -> bytes | None:
    """The contents of `path` inside the rootfs (symlinks followed inside it only), or None if
    it does not exist. UnsafeLayer if a symlink on the way leads out of the rootfs."""
    res = Resolver(root, "rootfs")
    try:
        host = res.follow(path, path)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except LayerError as e:
        if isinstance(e, UnsafeLayer):
            raise
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LayerError(f"{path} in the rootfs is larger than {limit} bytes")
    return data
