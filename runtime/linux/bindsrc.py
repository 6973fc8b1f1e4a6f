"""Bind sources for an init in a user namespace, which may not reach them itself (a 0700
directory of host root, say): host root opens them inside the init's new mount namespace
and hands the descriptors over with SCM_RIGHTS. The init then binds /proc/self/fd/N: the
source is a mount of its own namespace, so the submounts the kernel locked when it copied
the host's mounts stay locked, as with a plain bind.

The opening is done by a forked helper that joins the init's mount namespace and exits:
`create` itself never changes namespace.
"""

from __future__ import annotations

import os

from runtime import jsonio

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_MAX_FDS = 250  # SCM_RIGHTS carries at most 253 descriptors per message


def _is_bind(m: dict[str, Any]) -> bool:
    opts = m.get("options") or []
    return m.get("type") == "bind" or "bind" in opts or "rbind" in opts


def wanted(mounts: list[dict[str, Any]]) -> bool:
    """Is there any bind source to hand over? (Only root can open what the init can't.)"""
    return os.geteuid() == 0 and any(_is_bind(m) for m in mounts)


def socketpair() -> tuple[int, int]:
    """(create's end, the init's end): a unix stream pair, close-on-exec."""
    import socket
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def serve(pid: int, mounts: list[dict[str, Any]], bundle: str, sock_fd: int) -> None:
    """Open every bind source inside the mount namespace of `pid` and send the fds down
    `sock_fd`, with the mount indexes as a JSON list. Sources that can't be opened are
    left out: the init then tries them itself and reports why it can't."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            _open_and_send(pid, mounts, bundle, sock_fd)
            code = 0
        except BaseException:  # noqa: BLE001 - the init gets an empty answer below
            try:
                _send(sock_fd, [], [])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.waitpid(child, 0)


def _open_and_send(pid: int, mounts: list[dict[str, Any]], bundle: str, sock_fd: int) -> None:
    from runtime.linux import syscalls as sc
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    sc.setns(ns, sc.CLONE_NEWNS)
    os.close(ns)
    indexes: list[int] = []
    fds: list[int] = []
    for i, m in enumerate(mounts):
        if not _is_bind(m) or len(fds) >= _MAX_FDS:
            continue
        source = m.get("source") or ""
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        try:
            fds.append(os.open(source, os.O_PATH | os.O_CLOEXEC))
        except OSError:
            continue
        indexes.append(i)
    _send(sock_fd, indexes, fds)


def _send(sock_fd: int, indexes: list[int], fds: list[int]) -> None:
    import socket
    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [jsonio.dumps(indexes).encode() + b"\n"], fds)
    finally:
        s.detach()


def receive(sock_fd: int) -> dict[int, int]:
    """The init's side: mount index -> O_PATH fd of its source (empty if create failed)."""
    import socket
    s = socket.socket(fileno=sock_fd)
    try:
        data, fds, _flags, _addr = socket.recv_fds(s, 65536, _MAX_FDS)
    finally:
        s.close()
    if not data:
        return {}
    indexes = jsonio.loads(data.split(b"\n", 1)[0])
    if len(indexes) != len(fds):
        for fd in fds:
            os.close(fd)
        return {}
    return dict(zip(indexes, fds, strict=True))
