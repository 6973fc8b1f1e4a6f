"""OOM notifications for `events`.

v1: an eventfd registered through cgroup.event_control against memory.oom_control; the kernel
signals it on every OOM in the cgroup (and once more when the cgroup is removed, which we tell
apart by the cgroup being gone).
v2: the oom_kill counter in memory.events, which the kernel bumps and announces with
POLLPRI on the open file (kernfs notification); we poll it with a bounded timeout and re-read.
"""

from __future__ import annotations

import os
import select
import time

from runtime.cgroups.common import read, write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from runtime.cgroups.common import Manager


class OomWatcher:
    """wait(timeout) -> (number of new OOM events, cgroup gone?)."""

    def wait(self, timeout: float) -> tuple[int, bool]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class V1OomWatcher(OomWatcher):
    def __init__(self, path: str) -> None:
        self.path = path
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            self.ocfd = os.open(os.path.join(path, "memory.oom_control"),
                                os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            os.close(self.efd)
            raise PyruncError(f"cgroup {path}: memory.oom_control: {e.strerror}") from None
        try:
            write(path, "cgroup.event_control", f"{self.efd} {self.ocfd}")
        except PyruncError:
            self.close()
            raise

    def wait(self, timeout: float) -> tuple[int, bool]:
        ready, _, _ = select.select([self.efd], [], [], max(0.0, timeout))
        if not ready:
            return 0, False
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            return 0, False
        if not os.path.exists(os.path.join(self.path, "cgroup.event_control")):
            return 0, True  # the removal notification, not an OOM
        return 1, False

    def close(self) -> None:
        for fd in (getattr(self, "ocfd", -1), self.efd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ocfd = self.efd = -1


def _oom_kills(text: str | None) -> int | None:
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == "oom_kill":
            return int(v)
    return None


class V2OomWatcher(OomWatcher):
    def __init__(self, path: str) -> None:
        self.path = path
        self.file = os.path.join(path, "memory.events")
        try:
            self.fd = os.open(self.file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise PyruncError(f"cgroup {path}: memory.events: {e.strerror} (memory controller "
                              "not enabled)") from None
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLPRI | select.POLLERR)
        self.last = self._read() or 0

    def _read(self) -> int | None:
        try:
            return _oom_kills(os.pread(self.fd, 4096, 0).decode())
        except OSError:
            return None

    def wait(self, timeout: float) -> tuple[int, bool]:
        start = time.monotonic()
        events = self.poller.poll(max(0, int(timeout * 1000)))
        now = self._read()
        if now is None or not os.path.exists(self.file):
            return 0, True
        new = max(0, now - self.last)
        self.last = now
        if events and not new:
            # A regular file (or a notification about another counter) is always "ready":
            # don't spin, sleep out the rest of the timeout in small steps.
            left = timeout - (time.monotonic() - start)
            if left > 0:
                time.sleep(min(left, 0.05))
        return new, False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def oom_watcher(mgr: Manager) -> OomWatcher | None:
    """The OOM watcher for a container's cgroup; None when it has no memory controller."""
    if mgr.version == 2:
        path = mgr.path  # type: ignore[attr-defined]
        return V2OomWatcher(path) if read(path, "memory.events") is not None else None
    path = mgr.paths.get("memory")  # type: ignore[attr-defined]
    return V1OomWatcher(path) if path and os.path.isdir(path) else None
