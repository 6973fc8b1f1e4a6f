"""cgroup v2: one unified directory. On this host only cgroup.freeze/kill work for real;
the controller logic is tested over a fake cgroupfs tree (tests say which is which)."""

from __future__ import annotations

import os

from runtime.cgroups.manager import Manager, read_pids, rmdir_retry, write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


class V2Manager(Manager):
    version = 2

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise PyruncError(f"cgroup {self.path}: cannot create: {e.strerror}") from None

    def apply(self, pid: int) -> None:
        write(self.path, "cgroup.procs", str(pid))

    def set(self, resources: dict[str, Any]) -> None:
        from runtime.cgroups import resources_v2
        resources_v2.apply(self.path, resources)

    def pids(self) -> list[int]:
        return read_pids(self.path)

    def freeze(self, frozen: bool) -> None:
        write(self.path, "cgroup.freeze", "1" if frozen else "0")
        want = "frozen 1" if frozen else "frozen 0"
        for _ in range(1000):
            try:
                with open(os.path.join(self.path, "cgroup.events")) as f:
                    if want in f.read().splitlines():
                        return
            except FileNotFoundError:
                return
            os.sched_yield()

    def kill(self) -> bool:
        """SIGKILL every process through cgroup.kill when the kernel has it."""
        if not os.path.exists(os.path.join(self.path, "cgroup.kill")):
            return False
        write(self.path, "cgroup.kill", "1")
        return True

    def destroy(self) -> None:
        rmdir_retry(self.path)

    def to_state(self) -> dict[str, Any]:
        return {"version": 2, "unified": self.path}
