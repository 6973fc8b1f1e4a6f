"""cgroup v1 (and hybrid hosts): one directory per hierarchy, the same relative path in each."""

from __future__ import annotations

import os

from runtime.cgroups import resources_v1
from runtime.cgroups.manager import Manager, read_pids, rmdir_retry, write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


class V1Manager(Manager):
    version = 1

    def __init__(self, paths: dict[str, str], hierarchies: dict[str, dict[str, Any]]) -> None:
        self.paths = paths  # controller (or name=X, or "unified") -> directory
        self.hierarchies = hierarchies  # mount basename -> {path, fstype, options}

    def _dirs(self) -> list[str]:
        return sorted(set(self.paths.values()))

    def create(self) -> None:
        for d in self._dirs():
            self._mkdir(d)
        cpuset = self.paths.get("cpuset")
        if cpuset:
            _inherit_cpuset(cpuset)

    @staticmethod
    def _mkdir(d: str) -> None:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise PyruncError(f"cgroup {d}: cannot create: {e.strerror}") from None

    def apply(self, pid: int) -> None:
        for d in self._dirs():
            write(d, "cgroup.procs", str(pid))

    def set(self, resources: dict[str, Any]) -> None:
        resources_v1.apply(self.paths, resources)

    def pids(self) -> list[int]:
        for key in ("pids", "freezer", "memory", "cpu"):
            if key in self.paths:
                return read_pids(self.paths[key])
        dirs = self._dirs()
        return read_pids(dirs[0]) if dirs else []

    def freeze(self, frozen: bool) -> None:
        path = self.paths.get("freezer")
        if not path:
            raise PyruncError("cgroup freezer: not mounted on this host; cannot pause")
        write(path, "freezer.state", "FROZEN" if frozen else "THAWED")
        want = "FROZEN" if frozen else "THAWED"
        for _ in range(1000):
            with open(os.path.join(path, "freezer.state")) as f:
                if f.read().strip() == want:
                    return
            os.sched_yield()

    def destroy(self) -> None:
        for d in self._dirs():
            rmdir_retry(d)

    def to_state(self) -> dict[str, Any]:
        return {"version": 1, "paths": self.paths, "hierarchies": self.hierarchies}


def _inherit_cpuset(path: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpus/mems; copy them down from the parent."""
    chain = []
    p = path
    while os.path.exists(os.path.join(p, "cpuset.cpus")):
        chain.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(chain[:-1] if len(chain) > 1 else []):
        parent = os.path.dirname(d)
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(d, name)) as f:
                if f.read().strip():
                    continue
            with open(os.path.join(parent, name)) as f:
                write(d, name, f.read().strip())
