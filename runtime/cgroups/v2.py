"""cgroup v2: one unified directory. On this host only cgroup.freeze/kill work for real;
the controller logic is tested over a fake cgroupfs tree (tests say which is which)."""

from __future__ import annotations

import os
import time

from runtime.cgroups.common import (
    Manager,
    made_dirs,
    read,
    read_pids,
    remove_tree,
    sub_path,
    unified_frozen,
    write,
)
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class V2Manager(Manager):
    version = 2

    def __init__(self, path: str, root: str = "/sys/fs/cgroup") -> None:
        self.path = path
        self.root = root  # the cgroup2 mount point

    def dirs(self) -> list[str]:
        return [self.path]

    def create(self) -> None:
        self.made = made_dirs(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise PyruncError(f"cgroup {self.path}: cannot create: {e.strerror}") from None
        from runtime.cgroups.resources_v2 import enable_controllers
        enable_controllers(self.root, self.path)

    def apply(self, pid: int) -> None:
        write(self.path, "cgroup.procs", str(pid))

    def unified_dir(self) -> str | None:
        return self.path

    def plan(self, sub: dict[str, str] | None = None,
             skip: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        sub = sub or {}
        if any(sub):
            raise PyruncError(f"--cgroup: a controller name ({', '.join(k for k in sub if k)}) "
                              "is for cgroup v1; cgroup v2 has one hierarchy")
        rel = sub.get("", "")
        if self.path in skip and not rel:
            return []
        return [(sub_path(self.path, rel) if rel else self.path, "cgroup.procs")]

    def would_freeze(self) -> bool:
        return unified_frozen(self.path)

    def set(self, resources: dict[str, Any], warn: Callable[[str], None] | None = None) -> None:
        from runtime.cgroups import resources_v2
        resources_v2.apply(self.path, resources, warn, self.root)

    def pids(self) -> list[int]:
        return read_pids(self.path)

    def frozen(self) -> bool:
        return read(self.path, "cgroup.freeze") == "1"

    def freeze(self, frozen: bool, timeout: float = 10.0) -> None:
        """Write cgroup.freeze and wait for cgroup.events to report it (bounded)."""
        if not os.path.exists(os.path.join(self.path, "cgroup.freeze")):
            raise PyruncError(f"cgroup {self.path}: no cgroup.freeze (kernel older than 5.2); "
                              "cannot pause")
        write(self.path, "cgroup.freeze", "1" if frozen else "0")
        want = "frozen 1" if frozen else "frozen 0"
        deadline = time.monotonic() + timeout
        delay = 0.0001
        while True:
            events = read(self.path, "cgroup.events")
            if events is None or want in events.splitlines():
                return
            if time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        if frozen:
            write(self.path, "cgroup.freeze", "0")
        raise PyruncError(f"cgroup {self.path}: not {'frozen' if frozen else 'thawed'} after "
                          f"{timeout:g}s")

    def _kill_file(self) -> str | None:
        f = os.path.join(self.path, "cgroup.kill")
        return f if os.path.exists(f) else None

    def stats(self) -> dict[str, Any]:
        from runtime.cgroups import stats
        return stats.v2_stats(self.path)

    def destroy(self) -> None:
        remove_tree(self.path)

    def to_state(self) -> dict[str, Any]:
        return {"version": 2, "unified": self.path, "root": self.root}
