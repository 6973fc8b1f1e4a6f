"""Entering the namespaces of a running process (for `exec`).

A container's init may have its namespaces of its own, joined by path, or inherited from the
runtime; `exec` must land in all of them as the init sees them. So the namespaces are read from
/proc/<pid>/ns, not from the config: every one that differs from ours is joined.
"""

from __future__ import annotations

import errno
import os

from runtime.errors import PyruncError
from runtime.linux import syscalls as sc

# (name in /proc/PID/ns, clone flag). setns(pid) and setns(time) only move our future
# children, so the caller forks after joining; the user namespace is handled apart.
NS_FILES = [("ipc", sc.CLONE_NEWIPC), ("uts", sc.CLONE_NEWUTS), ("net", sc.CLONE_NEWNET),
            ("pid", sc.CLONE_NEWPID), ("cgroup", sc.CLONE_NEWCGROUP),
            ("time", sc.CLONE_NEWTIME), ("mnt", sc.CLONE_NEWNS)]


def same_namespace(a: str, b: str) -> bool:
    """Do the two /proc/.../ns/X links name one namespace? False if either is missing."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def open_namespaces(pid: int) -> list[tuple[str, int, int]]:
    """(name, fd, flag) for each namespace of `pid` that is not ours, the user one first, and
    ("root", fd, 0) for its root when it shares our mount namespace but not our root. A
    kernel without a namespace type (no /proc/self/ns/time) simply has nothing to join."""
    out: list[tuple[str, int, int]] = []
    try:
        for name, flag in [("user", sc.CLONE_NEWUSER)] + NS_FILES:
            theirs = f"/proc/{pid}/ns/{name}"
            if not os.path.exists(f"/proc/self/ns/{name}"):
                continue  # this kernel lacks the type
            if same_namespace(theirs, f"/proc/self/ns/{name}"):
                continue  # joining our own user namespace would even fail with EINVAL
            try:
                fd = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise PyruncError(f"cannot open {theirs}: {e.strerror}") from None
            out.append((name, fd, flag))
        if not any(name == "mnt" for name, _fd, _flag in out):
            # Our mount namespace (no mount namespace of its own): its root is a chroot.
            theirs = f"/proc/{pid}/root"
            if not same_namespace(theirs, "/"):
                try:
                    fd = os.open(theirs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    raise PyruncError(f"cannot open {theirs}: {e.strerror}") from None
                out.append(("root", fd, 0))
    except BaseException:
        close_all(out)
        raise
    return out


def close_all(fds: list[tuple[str, int, int]]) -> None:
    for _name, fd, _flag in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def join(fds: list[tuple[str, int, int]]) -> None:
    """setns into each. As host root every namespace can be joined before the user one; a
    rootless caller gets its rights from the user namespace, so whatever it may not join
    (EPERM) is retried once it is in there."""
    later = []
    user = None
    for name, fd, flag in fds:
        if flag == sc.CLONE_NEWUSER:
            user = (name, fd, flag)
            continue
        if name == "root":
            continue
        try:
            sc.setns(fd, flag)
        except OSError as e:
            if e.errno != errno.EPERM or user is None:
                raise PyruncError(f"cannot join the {name} namespace: {e.strerror}") from None
            later.append((name, fd, flag))
    for name, fd, flag in ([user] if user else []) + later:
        try:
            sc.setns(fd, flag)
        except OSError as e:
            raise PyruncError(f"cannot join the {name} namespace: {e.strerror}") from None
    for name, fd, _flag in fds:
        if name == "root":
            os.fchdir(fd)
            os.chroot(".")
            os.chdir("/")


def mount_mode(path: str | None) -> str:
    """How a container gets its mount namespace, from its linux.namespaces entry (None: not
    listed): "new", "joined" (another namespace, by path) or "runtime" (ours: inherited, or
    our own named by path; the root must then never be pivoted, see scratchns.py)."""
    if path is None:
        return "runtime"
    if not path:
        return "new"
    return "runtime" if same_namespace(path, "/proc/self/ns/mnt") else "joined"


CLONE_PARENT = 0x00008000


def spawn_in_user_namespace(flags: int, user_fd: int) -> int:
    """clone(flags) from inside the user namespace `user_fd`, so that the namespaces the
    clone makes belong to it. Like fork: 0 in the new process, its pid in the caller, whose
    child it is (an intermediate joins the user namespace and clones with CLONE_PARENT)."""
    rfd, wfd = os.pipe()
    mid = os.fork()
    if mid == 0:
        os.close(rfd)
        try:
            sc.setns(user_fd, sc.CLONE_NEWUSER)
            pid = sc.clone(flags | CLONE_PARENT)
        except BaseException as e:  # noqa: BLE001 - everything must reach the caller
            os.write(wfd, str(getattr(e, "strerror", None) or e).encode())
            os._exit(1)
        if pid == 0:
            os.close(wfd)
            return 0
        os.write(wfd, str(pid).encode())
        os._exit(0)
    os.close(wfd)
    try:
        data = b""
        while chunk := os.read(rfd, 4096):
            data += chunk
    finally:
        os.close(rfd)
        os.waitpid(mid, 0)
    if not data.isdigit():
        raise PyruncError("linux.namespaces: cannot start the init in the user namespace: "
                          + data.decode(errors="replace"))
    return int(data)
