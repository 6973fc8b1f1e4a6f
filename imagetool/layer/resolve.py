"""The in-root path resolver: paths inside a root resolved the way a chrooted process sees them.

Every component is lstat'ed; an absolute symlink restarts at the root, a relative one continues
from its directory, and a `..` that would climb above the root is refused (UnsafeLayer). The
last component of an entry is never followed. `read_file_in` reads a file of a rootfs (e.g.
/etc/passwd) with every symlink followed inside it only.
"""

from __future__ import annotations

import os
import stat
from typing import Any

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
    """Paths inside `root` resolved like a chroot would, without ever leaving it: every
    component is lstat'ed; symlinks are followed inside the root; a `..` above the root is
    refused. Resolved directories are cached (keyed by the unresolved path) until a
    directory or symlink is removed."""

    def __init__(self, root: str, label: str = "layer") -> None:
        self.root = os.path.realpath(root)
        self.label = label
        self.cache: dict[str, str] = {"": ""}
        self.implicit: list[str] = []
        self.before_mkdir: Any = None  # called with a parent's host path before mkdir in it
        self._links = 0
        self._entry = ""

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
        self._links, self._entry = 0, entry
        # from the longest prefix already resolved, one component at a time (no recursion:
        # a layer may nest thousands of directories)
        i = len(parts) - 1
        while i > 0 and "/".join(parts[:i]) not in self.cache:
            i -= 1
        rel = self.cache["/".join(parts[:i])]
        for j in range(i, len(parts)):
            rel = self._step(rel, parts[j], create)
            self.cache["/".join(parts[:j + 1])] = rel
        return rel

    def _step(self, parent: str, name: str, create: bool) -> str:
        rel = f"{parent}/{name}" if parent else name
        path = self.host(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{self.label}: {self._entry}: /{rel} does not exist") from None
            if self.before_mkdir is not None:
                self.before_mkdir(self.host(parent))
            os.mkdir(path, 0o755)
            self.implicit.append(rel)
            return rel
        except NotADirectoryError:
            raise LayerError(f"{self.label}: {self._entry}: /{parent} is not a "
                             "directory") from None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return rel
        if stat.S_ISLNK(mode):
            return self._follow(parent, rel, os.readlink(path), create)
        raise LayerError(f"{self.label}: {self._entry}: /{rel} is not a directory")

    def _follow(self, base: str, link: str, target: str, create: bool) -> str:
        self._links += 1
        if self._links > MAX_LINKS:
            raise LayerError(f"{self.label}: {self._entry}: too many levels of symbolic links")
        cur = "" if target.startswith("/") else base
        for comp in target.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not cur:
                    raise UnsafeLayer(
                        f"{self.label}: {self._entry}: goes through the symlink /{link} -> "
                        f"{target}, which leads outside the rootfs; refusing it")
                cur = cur.rpartition("/")[0]
                continue
            cur = self._step(cur, comp, create)
        return cur

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
        the last one too, never leaving the root. For reading files like /etc/passwd."""
        parts = split_name(path.lstrip("/"), self.label, "path")
        if not parts:
            return self.root
        parent = self.directory(parts[:-1], False, entry)
        self._links, self._entry = 0, entry
        rel = f"{parent}/{parts[-1]}" if parent else parts[-1]
        st = os.lstat(self.host(rel))
        if stat.S_ISLNK(st.st_mode):
            rel = self._follow_file(parent, rel)
        return self.host(rel)

    def _follow_file(self, base: str, link: str) -> str:
        while True:
            target = os.readlink(self.host(link))
            self._links += 1
            if self._links > MAX_LINKS:
                raise LayerError(f"{self.label}: {self._entry}: too many symbolic links")
            comps = [c for c in target.split("/") if c not in ("", ".")]
            cur = "" if target.startswith("/") else base
            for i, comp in enumerate(comps):
                if comp == "..":
                    if not cur:
                        raise UnsafeLayer(f"{self.label}: {self._entry}: the symlink /{link} "
                                          f"-> {target} leads outside the rootfs")
                    cur = cur.rpartition("/")[0]
                elif i < len(comps) - 1:
                    cur = self._step(cur, comp, False)
                else:
                    cur = f"{cur}/{comp}" if cur else comp
            if not comps or comps[-1] == "..":
                return cur
            st = os.lstat(self.host(cur))
            if not stat.S_ISLNK(st.st_mode):
                return cur
            base, link = cur.rpartition("/")[0], cur



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
