"""The seam between the root-building logic (rootfs.py, mounts.py) and the mount syscalls:
they call `calls.<name>(...)`, never syscalls.py directly, so a test can put a recording
double in place (`use`) and check the order of mounts, pivot and unmounts without root."""

from __future__ import annotations

from runtime.linux import syscalls as sc


class Syscalls:
    """The real calls (syscalls.py); a double implements the same five methods."""

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        sc.mount(source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int = 0) -> None:
        sc.umount2(target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        sc.pivot_root(new_root, put_old)

    def mount_setattr(self, fd: int, attr_set: int, attr_clr: int,
                      recursive: bool = True) -> None:
        sc.mount_setattr(fd, attr_set, attr_clr, recursive)

    def move_mount_fd(self, from_fd: int, to_fd: int) -> None:
        sc.move_mount_fd(from_fd, to_fd)


calls: Syscalls = Syscalls()


def use(impl: Syscalls) -> Syscalls:
    """Route the mount calls to `impl` (a test double); returns the one in place before."""
    global calls
    old, calls = calls, impl
    return old
