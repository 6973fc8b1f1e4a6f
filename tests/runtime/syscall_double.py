"""A recording double for runtime/linux/mountcalls.Syscalls: every call is appended to
`calls` as (name, args) with /proc/self/fd/N paths written as <fd> (fd numbers vary), and
`fail` makes a call on a given target raise OSError(errno) instead."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from runtime.linux import mountcalls

_FD = re.compile(r"^/proc/self/fd/\d+$")


def _norm(v: object) -> object:
    return "<fd>" if isinstance(v, str) and _FD.match(v) else v


class Recorder(mountcalls.Syscalls):
    """Records instead of calling the kernel; nothing is mounted."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.fail = fail or {}

    def _rec(self, name: str, target: str, *args: object) -> None:
        self.calls.append((name, tuple(_norm(a) for a in args)))
        if target in self.fail:
            raise OSError(self.fail[target], f"{name} {target}: refused by the double")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        self._rec("mount", target, source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._rec("umount2", target, target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._rec("pivot_root", new_root, new_root, put_old)

    def mount_setattr(self, fd: int, attr_set: int, attr_clr: int,
                      recursive: bool = True) -> None:
        self._rec("mount_setattr", "", "<fd>", attr_set, attr_clr, recursive)

    def move_mount_fd(self, from_fd: int, to_fd: int) -> None:
        self._rec("move_mount", "", "<fd>", "<fd>")


@contextmanager
def recording(fail: dict[str, int] | None = None) -> Iterator[Recorder]:
    """Route rootfs.py's and mounts.py's mount calls to a Recorder for the block."""
    rec = Recorder(fail)
    old = mountcalls.use(rec)
    try:
        yield rec
    finally:
        mountcalls.use(old)
