"""The host's view of a container's cgroups, for the differential suites: which hierarchy is
mounted where, the cgroup path of a process in each, reading its files from the host, whether
this host offers a file at all, and a sleeping config with given resources."""

from __future__ import annotations

import copy
import os
from typing import Any

from tests import hostcaps

Config = dict[str, Any]
CGROOT = "/sys/fs/cgroup"
MiB = 1 << 20
# None where the disk scheduler offers no weights (mq-deadline, kyber, none): both runtimes
# must then refuse blockIO.weight, and the cases test that refusal instead.
WEIGHT_FILE = hostcaps.blkio_weight_file()


# -- the host's cgroup hierarchies ------------------------------------------------------

def _mounts() -> dict[str, tuple[str, str]]:
    """mount basename under /sys/fs/cgroup -> (hierarchy key as /proc/<pid>/cgroup names it,
    mountpoint). The key is the sorted controller list, name=X, or '' for cgroup2."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, rest = pre.split(), post.split()
            if len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
                continue
            mountpoint = fields[4]
            if os.path.dirname(mountpoint) != CGROOT:
                continue
            if rest[0] == "cgroup2":
                key = ""
            else:
                opts = rest[2].split(",")
                ctrls = [o for o in opts if o in _V1_CONTROLLERS or o.startswith("name=")]
                key = ",".join(sorted(ctrls))
            out[os.path.basename(mountpoint)] = (key, mountpoint)
    return out


_V1_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                   "net_cls", "net_prio", "hugetlb", "perf_event", "rdma", "misc"}


def cgroup_paths(pid: int) -> dict[str, str]:
    """hierarchy key -> the process's cgroup path, from /proc/<pid>/cgroup."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[",".join(sorted(ctrls.split(","))) if ctrls else ""] = path
    return out


def host_dir(pid: int, mount: str) -> str:
    """The host directory of `pid`'s cgroup in the hierarchy mounted at /sys/fs/cgroup/<mount>."""
    key, mountpoint = _mounts()[mount]
    return mountpoint + cgroup_paths(pid)[key]


def read_host(pid: int, files: list[str]) -> dict[str, str]:
    """'memory/memory.limit_in_bytes' -> its value in the container's cgroup, read from the
    host; a missing file reads as '<missing>'."""
    out = {}
    for spec in files:
        mount, name = spec.split("/", 1)
        try:
            with open(os.path.join(host_dir(pid, mount), name)) as f:
                out[spec] = " | ".join(f.read().split("\n")).strip(" |")
        except FileNotFoundError:
            out[spec] = "<missing>"
    return out


def own_file(mount: str, name: str) -> bool:
    """Whether this process's own cgroup in that hierarchy has the file (host capability).
    On the cgroup2 mount the root cgroup lacks controller files: ask cgroup.controllers."""
    if mount == "unified":
        try:
            with open(os.path.join(_mounts()["unified"][1], "cgroup.controllers")) as f:
                return name.split(".", 1)[0] in f.read().split()
        except (KeyError, FileNotFoundError):
            return False
    try:
        return os.path.exists(os.path.join(host_dir(os.getpid(), mount), name))
    except KeyError:
        return False


def _sleeping(config: Config, resources: dict[str, Any]) -> Config:
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "120"]
    cfg["linux"]["resources"].update(copy.deepcopy(resources))
    return cfg
