"""Unique cgroupsPath names for cases that share, freeze or pre-create a container's cgroup,
and removal of everything under them afterwards, whatever a case left: each directory is
thawed, the processes still in it (started by the case) are SIGKILLed by pid, and the
directories are removed deepest first."""

from __future__ import annotations

import os
import signal
import time
import uuid

CGROOT = "/sys/fs/cgroup"


def mounts() -> list[tuple[str, str, set[str]]]:
    """(mountpoint, fstype, super options) of every cgroup hierarchy under /sys/fs/cgroup."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            rest = post.split()
            mp = pre.split()[4]
            if len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2") \
                    and (mp == CGROOT or mp.startswith(CGROOT + "/")):
                out.append((mp, rest[0], set(rest[2].split(","))))
    return out


def is_v2_host() -> bool:
    return os.path.exists(os.path.join(CGROOT, "cgroup.controllers"))


def v1_dir(controller: str, path: str) -> str | None:
    """The directory of absolute cgroupsPath `path` in the v1 hierarchy of `controller`."""
    for mp, fstype, opts in mounts():
        if fstype == "cgroup" and controller in opts:
            return mp + path
    return None


def unified_dir(path: str) -> str | None:
    """The directory of `path` in the cgroup2 hierarchy (the whole tree on a v2 host, the
    cgroup2 mount beside the v1 ones on a hybrid host)."""
    for mp, fstype, _opts in mounts():
        if fstype == "cgroup2":
            return mp + path
    return None


class CgroupNames:
    """Hands out top-level cgroup names; cleanup() removes every directory under them."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        name = f"cgconf{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def dirs(self) -> list[str]:
        """Every directory under our names in every hierarchy, deepest first."""
        found = []
        for mp, _fstype, _opts in mounts():
            for name in self.names:
                top = os.path.join(mp, name)
                if os.path.isdir(top):
                    found += [d for d, _sub, _files in os.walk(top)]
        return sorted(found, key=lambda d: d.count("/"), reverse=True)

    def cleanup(self) -> list[str]:
        """Thaw, kill what is left, remove; return the directories that would not go."""
        dirs = self.dirs()
        for d in sorted(dirs, key=lambda d: d.count("/")):  # parents first: thaw from the top
            _write(d, "freezer.state", "THAWED")
            _write(d, "cgroup.freeze", "0")
        for d in dirs:
            for pid in _pids(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        left = []
        for d in dirs:
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(d)
                        break
                    time.sleep(0.02)
        return left


def _write(d: str, name: str, value: str) -> None:
    try:
        with open(os.path.join(d, name), "w") as f:
            f.write(value)
    except OSError:
        pass


def _pids(d: str) -> list[int]:
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def pids_in(d: str) -> list[int]:
    """The processes directly in cgroup directory `d` ([] when it is gone)."""
    return _pids(d)
