"""A seccomp agent for the SCMP_ACT_NOTIFY cases: listens on a unix socket (a path or an
abstract @name), takes each runtime's message and listener fd, and answers notifications:

- mkdir/mkdirat: makes the directory with "-<listenerMetadata>" appended to its name, in
  the caller's root (so `mkdir /dev/shm/foo` yields /dev/shm/foo-bar), and returns 0;
- chmod/fchmod/fchmodat: fails them with ENOMEDIUM;
- anything else: lets the kernel run it (SECCOMP_USER_NOTIF_FLAG_CONTINUE).

With `hang_up=True` it closes every listener fd as soon as it arrives, like an agent that
died: notified syscalls then fail with ENOSYS. `stop()` closes everything it holds.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import socket
import struct
import threading

NOTIF_SIZE, RESP_SIZE = 80, 24  # struct seccomp_notif, struct seccomp_notif_resp
IOCTL_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1
FLAG_CONTINUE = 1


def _names() -> dict[int, str]:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return {lib.seccomp_syscall_resolve_name(n.encode()): n
            for n in ("mkdir", "mkdirat", "chmod", "fchmod", "fchmodat")}


class Agent(threading.Thread):
    def __init__(self, address: str, hang_up: bool = False) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.hang_up = hang_up
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind("\0" + address[1:] if address.startswith("@") else address)
        self.srv.listen(8)
        self.messages: list[dict] = []
        self.seen: list[str] = []  # names of the notified syscalls we act on
        self.error: BaseException | None = None
        self._names = _names()
        self._fds: dict[int, str] = {}  # listener fd -> listenerMetadata
        self._stop_r, self._stop_w = os.pipe()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self.join(10)
        for fd in (self._stop_r, self._stop_w, *self._fds):
            os.close(fd)
        self._fds.clear()
        self.srv.close()

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            self.error = e

    def _loop(self) -> None:
        poll = select.poll()
        poll.register(self.srv.fileno(), select.POLLIN)
        poll.register(self._stop_r, select.POLLIN)
        while True:
            for fd, ev in poll.poll(60000):
                if fd == self._stop_r:
                    return
                if fd == self.srv.fileno():
                    listener = self._accept()
                    if listener is not None:
                        poll.register(listener, select.POLLIN)
                elif ev & select.POLLIN:
                    self._answer(fd)
                elif ev & (select.POLLHUP | select.POLLERR):
                    poll.unregister(fd)
                    os.close(fd)
                    del self._fds[fd]

    def _accept(self) -> int | None:
        conn, _ = self.srv.accept()
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            msg = _complete(data)
            while msg is None:  # the sender may keep the connection open: read to a whole JSON
                chunk = conn.recv(65536)
                if not chunk:
                    raise ValueError(f"agent: truncated message {data!r}")
                data += chunk
                msg = _complete(data)
        self.messages.append(msg)
        if self.hang_up or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return None
        self._fds[fds[0]] = msg.get("metadata", "")
        return fds[0]

    def _answer(self, fd: int) -> None:
        buf = bytearray(NOTIF_SIZE)
        try:
            fcntl.ioctl(fd, IOCTL_RECV, buf, True)
        except OSError:
            return  # the caller went away meanwhile
        nid, pid, _flags, nr, _arch, _ip = struct.unpack_from("=QIIiIQ", buf)
        args = struct.unpack_from("=6Q", buf, 32)
        name = self._names.get(nr)
        val, err, flags = 0, 0, 0
        if name in ("mkdir", "mkdirat"):
            self.seen.append(name)
            path = _read_string(pid, args[0] if name == "mkdir" else args[1])
            try:
                os.mkdir(_in_root(pid, f"{path}-{self._fds[fd]}"))
            except OSError as e:
                err = -e.errno
        elif name in ("chmod", "fchmod", "fchmodat"):
            self.seen.append(name)
            err = -errno.ENOMEDIUM
        else:
            flags = FLAG_CONTINUE
        resp = bytearray(struct.pack("=QqiI", nid, val, err, flags))
        try:
            fcntl.ioctl(fd, IOCTL_SEND, resp, True)
        except OSError:
            pass  # ENOENT: the caller was interrupted


def _complete(data: bytes) -> dict | None:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _read_string(pid: int, addr: int) -> str:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(addr)
        raw = mem.read(4096)
    return raw.split(b"\0", 1)[0].decode()


def _in_root(pid: int, path: str) -> str:
    base = f"/proc/{pid}/root" if path.startswith("/") else f"/proc/{pid}/cwd/"
    return base + path
