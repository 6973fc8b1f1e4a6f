"""The monitor's input side: bytes from the caller's stdin (`run -i`) and from `attach`
clients go to the container's stdin (a pipe the monitor holds, or the pty master).

Clients connect to the container's `attach.sock` (in its 0700 record directory; bound and
reached through /proc/self/fd/N/ so the path stays short) and simply send bytes; detach
keys are the client's business (it just disconnects). Bounded: at most MAX_CLIENTS
connections, and no source is read while PENDING_MAX bytes wait to be written; writes
never block the monitor. The caller's EOF closes the container's stdin when `once` (docker's
StdinOnce, `run -i` attached); a client's EOF never does."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket

MAX_CLIENTS = 4
PENDING_MAX = 65536
SOCK = "attach.sock"


def short_path(directory: str) -> tuple[int, str]:
    """An O_PATH fd of `directory` and the socket's path through it (close the fd after)."""
    dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return dfd, f"/proc/self/fd/{dfd}/{SOCK}"


def connect(directory: str) -> socket.socket:
    """A client connection to the attach socket in `directory` (OSError when none)."""
    dfd, path = short_path(directory)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        return s
    finally:
        os.close(dfd)


class InputRelay:
    """Copies input to `target`, which it owns (closed at the caller's EOF when `once`,
    else at close(): that is the container's EOF on a pipe)."""

    def __init__(self, sel: selectors.BaseSelector, target: int, caller: int | None,
                 directory: str | None, once: bool) -> None:
        self.sel = sel
        self.wfd: int | None = target
        os.set_blocking(self.wfd, False)
        self.caller = caller
        self.once = once
        self.pending = b""
        self.paused = False
        self.clients: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.sock_path: str | None = None
        if directory is not None:
            self.sock_path = os.path.join(directory, SOCK)
            with contextlib.suppress(OSError):
                os.unlink(self.sock_path)
            dfd, path = short_path(directory)
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                lsock.bind(path)
                lsock.listen(MAX_CLIENTS)
                lsock.setblocking(False)
            except OSError:
                lsock.close()
                raise
            finally:
                os.close(dfd)
            self.listener = lsock
            sel.register(self.listener, selectors.EVENT_READ)
        if caller is not None:
            sel.register(caller, selectors.EVENT_READ)

    def fds(self) -> set[int]:
        """Every fd this relay has registered (the watch loop hands those to handle())."""
        out = {c.fileno() for c in self.clients}
        for fd in (self.wfd, self.caller):
            if fd is not None:
                out.add(fd)
        if self.listener is not None:
            out.add(self.listener.fileno())
        return out

    def _readers(self) -> list[int]:
        out = [c.fileno() for c in self.clients]
        if self.caller is not None:
            out.append(self.caller)
        return out

    def handle(self, fd: int, events: int) -> None:
        if self.listener is not None and fd == self.listener.fileno():
            with contextlib.suppress(OSError):
                conn, _ = self.listener.accept()
                if len(self.clients) >= MAX_CLIENTS or self.wfd is None:
                    conn.close()
                    return
                conn.setblocking(False)
                self.clients.append(conn)
                if not self.paused:
                    self.sel.register(conn, selectors.EVENT_READ)
            return
        if fd == self.wfd:
            self._flush()
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_reader(fd)
            return
        if self.wfd is None:
            return
        self.pending += data
        self._flush()

    def _drop_reader(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)
        if fd == self.caller:
            os.close(fd)
            self.caller = None
            if self.once and not self.pending:
                self._close_target()
            return
        for c in list(self.clients):
            if c.fileno() == fd:
                self.clients.remove(c)
                c.close()

    def _flush(self) -> None:
        if self.wfd is None:
            return
        try:
            while self.pending:
                self.pending = self.pending[os.write(self.wfd, self.pending):]
        except BlockingIOError:
            pass
        except OSError:  # the container closed its stdin or is gone
            self._close_target()
            return
        self._want_write(bool(self.pending))
        self._pace()
        if not self.pending and self.once and self.caller is None:
            self._close_target()

    def _pace(self) -> None:
        """Stop reading the sources while PENDING_MAX bytes wait; read them again after."""
        full = len(self.pending) >= PENDING_MAX
        if full == self.paused:
            return
        self.paused = full
        for r in self._readers():
            with contextlib.suppress(KeyError, ValueError):
                if full:
                    self.sel.unregister(r)
                else:
                    self.sel.register(r, selectors.EVENT_READ)

    def _want_write(self, on: bool) -> None:
        assert self.wfd is not None
        registered = True
        try:
            self.sel.get_key(self.wfd)
        except KeyError:
            registered = False
        if on and not registered:
            self.sel.register(self.wfd, selectors.EVENT_WRITE)
        elif not on and registered:
            self.sel.unregister(self.wfd)

    def _close_target(self) -> None:
        """No more input for the container: its stdin is closed (EOF), clients dropped."""
        self.pending = b""
        self.paused = False
        if self.wfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.wfd)
            os.close(self.wfd)
            self.wfd = None
        for c in self.clients:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(c)
            c.close()
        self.clients = []

    def close(self) -> None:
        """Stop everything (the container is gone); the socket file is removed."""
        self._close_target()
        if self.caller is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.caller)
            os.close(self.caller)
            self.caller = None
        if self.listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
        if self.sock_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.sock_path)
