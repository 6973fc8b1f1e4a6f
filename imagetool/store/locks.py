"""flock-based locks that work across processes and across threads of one process.

flock belongs to an open file description, so two opens of the lock file in one process
would block each other (or deadlock a thread against itself). Each lock file therefore has one
`Flock` per process, which counts its holders and keeps a single flock while any are inside."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from imagetool.errors import ImagetoolError


class LockBusy(ImagetoolError):
    """A non-blocking acquire found the lock held."""


class Flock:
    """Exclusive (re-entrant per thread) and shared holds on one lock file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._shared: dict[int, int] = {}
        self._fd = -1

    def held_here(self) -> bool:
        """Whether the calling thread holds this lock, exclusively or shared."""
        me = threading.get_ident()
        return self._owner == me or me in self._shared

    def _open_and_lock(self, op: int) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(self.path) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def exclusive(self, blocking: bool = True) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                fresh = False
            else:
                if me in self._shared:
                    raise RuntimeError(f"{self.path}: exclusive lock asked for while this "
                                       "thread holds it shared; that would wait forever")
                while self._owner is not None or self._shared:
                    if not blocking:
                        raise LockBusy(self.path)
                    self._cond.wait()
                self._owner, self._depth, fresh = me, 1, True
        if fresh:
            try:
                self._fd = self._open_and_lock(fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BaseException:
                with self._cond:
                    self._owner, self._depth = None, 0
                    self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._fd)
                    self._fd, self._owner = -1, None
                    self._cond.notify_all()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:  # an exclusive hold already covers a shared one
                inside_exclusive = True
            else:
                inside_exclusive = False
                while self._owner is not None:
                    self._cond.wait()
                if not self._shared:
                    self._fd = self._open_and_lock(fcntl.LOCK_SH)
                self._shared[me] = self._shared.get(me, 0) + 1
        try:
            yield
        finally:
            if not inside_exclusive:
                with self._cond:
                    self._shared[me] -= 1
                    if not self._shared[me]:
                        del self._shared[me]
                    if not self._shared:
                        os.close(self._fd)
                        self._fd = -1
                        self._cond.notify_all()


_registry: dict[str, Flock] = {}
_registry_lock = threading.Lock()


def flock_for(path: str) -> Flock:
    """The one Flock of this process for `path`."""
    key = os.path.realpath(path)
    with _registry_lock:
        lk = _registry.get(key)
        if lk is None:
            lk = _registry[key] = Flock(key)
        return lk
