"""Resolve paths inside a rootfs as if it were '/': symlinks and '..' never leave it.

This is what keeps a mount target such as /etc -> /host/etc inside the container
(CVE-2021-30465): every component is looked up under the root, absolute symlinks restart
at the root, and '..' stops at it. The final check after opening (see open_inside) closes
the race between resolving and mounting.
"""

from __future__ import annotations

import os
import stat

from runtime.errors import PyruncError

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Join `unsafe` onto `root`, following symlinks as if chrooted into root."""
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)  # missing (or under a file): callers creating it will say
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise PyruncError(f"{unsafe}: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def is_inside(root: str, path: str) -> bool:
    root = os.path.abspath(root).rstrip("/") or "/"
    return root == "/" or path == root or path.startswith(root + "/")


def open_inside(root: str, path: str, flags: int = os.O_PATH) -> int:
    """Open an already-resolved path without following a final symlink, and prove that the
    kernel's view of it (/proc/self/fd) is still under root; raise otherwise."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    if not is_inside(root, real):
        os.close(fd)
        raise PyruncError(f"mount target {path} resolves to {real}, outside the rootfs")
    return fd


def mkdir_all_inside(root: str, unsafe: str, mode: int = 0o755) -> str:
    """Create a directory path inside root; return it. The path is resolved once; the
    missing tail is created component by component, and a symlink met on the way (a race
    or an existing link) sends that component back through secure_join."""
    target = secure_join(root, unsafe)
    rel = os.path.relpath(target, root)
    if rel == ".":
        return target
    cur = os.path.abspath(root)
    for part in rel.split("/"):
        nxt = f"{cur}/{part}"
        try:
            os.mkdir(nxt, mode)
        except NotADirectoryError:
            raise PyruncError(f"{unsafe}: {cur} exists and is not a directory") from None
        except FileExistsError:
            st = os.lstat(nxt)
            if stat.S_ISLNK(st.st_mode):
                nxt = secure_join(root, os.path.relpath(nxt, root))
                os.makedirs(nxt, mode, exist_ok=True)
            elif not stat.S_ISDIR(st.st_mode):
                raise PyruncError(f"{unsafe}: {nxt} exists and is not a directory") from None
        cur = nxt
    return cur
