"""cgroup v1 (and hybrid hosts): one directory per hierarchy, the same relative path in each.

On a hybrid host the container is also placed in the cgroup2 mount ("unified" in `paths`):
its cgroup.kill makes SIGKILL atomic, and controllers bound there (hugetlb on this host) are
used for the settings that need them.
"""

import os
import time

from runtime.cgroups.common import (
    Manager,
    made_dirs,
    own_cgroups,
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


class V1Manager(Manager):
    version = 1

    def __init__(self, paths: dict[str, str], hierarchies: "dict[str, dict[str, Any]]") -> None:
        self.paths = paths  # controller (or name=X, or "unified") -> directory
        self.hierarchies = hierarchies  # mount basename -> {path, fstype, options, mountpoint}

    def _dirs(self) -> list[str]:
        return sorted(set(self.paths.values()))

    def dirs(self) -> list[str]:
        return self._dirs()

    def create(self) -> None:
        self.made = []
        for d in self._dirs():
            self.made += made_dirs(d)
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

    def unified_dir(self) -> str | None:
        return self.paths.get("unified")

    def plan(self, sub: dict[str, str] | None = None,
             skip: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """(directory, file) that enter() writes: v1 directories through `tasks` (one
        thread moved, without the RCU grace period some kernels make a `cgroup.procs`
        write wait for), the cgroup2 directory beside them through cgroup.procs."""
        sub = sub or {}
        for key in sub:
            if key and key not in self.paths:
                have = ", ".join(sorted(k for k in self.paths if k != "unified"))
                raise PyruncError(f"unknown controller {key} in --cgroup (this host has {have})")
        keys: dict[str, list[str]] = {}  # directory -> its controllers (co-mounted ones)
        for key, d in sorted(self.paths.items()):
            keys.setdefault(d, []).append(key)
        unified = self.paths.get("unified")
        out = []
        for d, names in keys.items():
            rel = next((sub[k] for k in names if k in sub), sub.get("", ""))
            if d in skip and not rel:
                continue
            out.append((sub_path(d, rel) if rel else d,
                        "cgroup.procs" if d == unified else "tasks"))
        return out

    def unified_root(self) -> str | None:
        """Mount point of the cgroup2 hierarchy beside the v1 ones, if there is one."""
        for h in self.hierarchies.values():
            if h.get("fstype") == "cgroup2":
                if h.get("mountpoint"):
                    return h["mountpoint"]
                break
        if "unified" not in self.paths:
            return None
        from runtime.cgroups.common import discover
        for m in discover():
            if m["fstype"] == "cgroup2" and self.paths["unified"].startswith(m["mountpoint"]):
                return m["mountpoint"]
        return None

    def set(self, resources: "dict[str, Any]", warn: "Callable[[str], None] | None" = None) -> None:
        from runtime.cgroups import resources_v1  # here: delete, kill and pause never set
        resources_v1.apply(self.paths, resources, warn, self.unified_root())

    def pids(self) -> list[int]:
        for key in ("pids", "freezer", "memory", "cpu", "unified"):
            if key in self.paths:
                return read_pids(self.paths[key])
        dirs = self._dirs()
        return read_pids(dirs[0]) if dirs else []

    def frozen(self) -> bool:
        path = self.paths.get("freezer")
        return bool(path) and read(path or "", "freezer.state") == "FROZEN"

    def would_freeze(self) -> bool:
        path = self.paths.get("freezer")
        if path and read(path, "freezer.state") in ("FROZEN", "FREEZING"):
            return True
        unified = self.paths.get("unified")
        return bool(unified) and unified_frozen(unified or "")

    def release(self, pid: int) -> None:
        path = self.paths.get("freezer")
        if not path:
            return
        for h in self.hierarchies.values():
            if h.get("fstype") == "cgroup" and "freezer" in h.get("options", "").split(","):
                own = own_cgroups().get("freezer", "/")
                try:
                    write(os.path.join(h["mountpoint"], own.lstrip("/")), "cgroup.procs",
                          str(pid))
                except PyruncError:
                    pass
                return

    def freeze(self, frozen: bool, timeout: float = 5.0) -> None:
        """FROZEN/THAWED through freezer.state, waiting until the kernel reports it.

        Freezing can sit in FREEZING while tasks keep forking; then thaw briefly and retry
        (what runc does too). If it never settles, thaw and fail rather than leave it half
        frozen."""
        path = self.paths.get("freezer")
        if not path:
            raise PyruncError("cgroup freezer: the freezer controller is not mounted on this "
                              "host; cannot pause")
        want = "FROZEN" if frozen else "THAWED"
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            write(path, "freezer.state", want)
            state = read(path, "freezer.state")
            if state == want or state is None:
                return
            if time.monotonic() > deadline:
                break
            attempt += 1
            if frozen and attempt % 50 == 0:
                write(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            else:
                time.sleep(min(0.0001 * attempt, 0.01))
        if frozen:
            write(path, "freezer.state", "THAWED")
        raise PyruncError(f"cgroup freezer {path}: still {state} after {timeout:g}s; "
                          f"unable to {'freeze' if frozen else 'thaw'}")

    def _kill_file(self) -> str | None:
        unified = self.paths.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
            return os.path.join(unified, "cgroup.kill")
        return None

    def stats(self) -> "dict[str, Any]":
        from runtime.cgroups import stats
        return stats.v1_stats(self.paths)

    def destroy(self) -> None:
        for d in self._dirs():
            remove_tree(d)

    def to_state(self) -> "dict[str, Any]":
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
