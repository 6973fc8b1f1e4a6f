"""Resolve paths inside a rootfs as if it were '/': symlinks and '..' never leave it.

This is what keeps a mount target such as /etc -> /host/etc inside the container
(CVE-2021-30465): every component is looked up under the root, absolute symlinks restart
at the root, and '..' stops at it (the shared resolver's clamp mode, inroot.py). The final
check after opening (see open_inside) closes the race between resolving and mounting.
"""

from __future__ import annotations

import os
import stat

from runtime.errors import PyruncError
from runtime.linux.inroot import InRoot, TooManyLinks

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Join `unsafe` onto `root`, following symlinks as if chrooted into root (clamp mode of
    the shared resolver, runtime/linux/inroot.py: every component followed, the last too; a
    missing one, or one under a file, is kept as a name: callers creating it will say)."""
    root = os.path.abspath(root)
    try:
        rel = InRoot(root, max_links=_MAX_LINKS).walk(unsafe.split("/"))
    except TooManyLinks:
        raise PyruncError(f"{unsafe}: too many levels of symbolic links") from None
    return os.path.join(root, rel) if rel else root


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
