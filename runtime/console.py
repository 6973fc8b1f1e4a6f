"""Terminals: a pty made inside the container, its master handed to --console-socket.

The receiver gets one message whose data is the pty's name and whose SCM_RIGHTS carries the
master fd (what containerd's shim and conmon expect).

Ownership, as runc leaves it: the pty belongs to the process's uid; its group is the one the
container's devpts gives new ptys (its `gid=` option, usually 5, the tty group; else the
init's own gid). process.consoleSize, when both sides are set, sizes the pty before the
receiver gets it. Only the pty made here is ever chowned, never the caller's stdio.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct

from runtime.errors import PyruncError
from runtime.linux import syscalls as sc

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414


def open_pty() -> tuple[int, str]:
    """(master fd, slave path) from this mount namespace's /dev/ptmx."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    return master, f"/dev/pts/{n}"


def send_fd(sock_fd: int, name: str, fd: int) -> None:
    s = socket.socket(fileno=os.dup(sock_fd))
    try:
        s.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     array.array("i", [fd]))])
    finally:
        s.close()


def recv_fd(sock: socket.socket) -> tuple[str, int]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("console socket: no file descriptor received")
    return msg.decode(errors="replace"), fds[0]


def set_size(fd: int, size: dict | None) -> None:
    """process.consoleSize ({"height", "width"}) onto the pty; unset or zero: left alone."""
    if size is None:
        return
    if not isinstance(size, dict):
        raise PyruncError("process.consoleSize: must be an object with height and width")
    for side in ("height", "width"):
        v = size.get(side, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
            raise PyruncError(f"process.consoleSize.{side}: must be an integer from 0 to 65535")
    if size.get("height") and size.get("width"):
        fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))


def setup_console(sock_fd: int, uid: int, bind: bool = True,
                  size: dict | None = None) -> None:
    """In the init after pivot_root (or an exec'd process), before the uid switch: make the
    pty, give it to `uid`, size it, bind it on /dev/console (init only), send the master,
    and make the slave our controlling terminal and stdio."""
    master, slave_path = open_pty()
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.fchown(slave, uid, -1)  # the group stays devpts's choice
    except OSError as e:
        if e.errno not in (1, 22):  # EPERM, EINVAL: uid or owner unmapped here, as runc
            raise
    set_size(master, size)
    if bind:
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        try:
            sc.mount(slave_path, "/dev/console", None, sc.MS_BIND)
        except OSError:
            pass  # no /dev tmpfs of our own: the console bind is best effort, as in runc
    send_fd(sock_fd, slave_path, master)
    os.close(master)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for i in (0, 1, 2):
        os.dup2(slave, i)
    if slave > 2:
        os.close(slave)
