"""The bundle changes for a container run by an ordinary user.

Inside imagetool's user namespace the container gets a user namespace of its own mapping
every id of ours one to one (so pyrunc treats it as a user-namespaced container: devices
bound from the host, not made with mknod) and no device cgroup rules (there is no cgroup to
put them in). Resource limits need a cgroup the user can write: on a cgroup v2 host with
delegation (systemd's user@.service gives the user's own subtree memory, pids, cpu and io)
they could be applied there; anywhere else they are refused with one line, never ignored."""

from __future__ import annotations

import os
from typing import Any

from imagetool.run.records import ContainerError

FLAGS = {"memory": "--memory/--memory-swap/--memory-reservation", "cpu": "--cpus/--cpu-shares/"
         "--cpuset-cpus", "pids": "--pids-limit", "blockIO": "--blkio-weight/--device-*-bps",
         "hugepageLimits": "hugetlb limits", "devices": "--device-cgroup-rule"}


def _identity(kind: str) -> list[dict[str, int]]:
    """Our own map's extents, each mapped to itself (an extent of a child's map must fall
    inside one extent of its parent's)."""
    with open(f"/proc/self/{kind}") as f:
        rows = [line.split() for line in f if line.strip()]
    return [{"containerID": int(r[0]), "hostID": int(r[0]), "size": int(r[2])} for r in rows]


def cgroup_writable() -> bool:
    """True when this process may make a cgroup under its own (cgroup v2 delegation)."""
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return False  # cgroup v1: only root writes the hierarchies
    try:
        with open("/proc/self/cgroup") as f:
            own = next(line.split("::", 1)[1].strip() for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return False
    return os.access(os.path.join("/sys/fs/cgroup", own.lstrip("/")), os.W_OK)


def refuse_resources(resources: dict[str, Any]) -> None:
    """One-line error naming the flags when limits were asked for and no cgroup can hold
    them."""
    asked = [k for k, v in (resources or {}).items() if v]
    if asked and not cgroup_writable():
        flags = ", ".join(FLAGS.get(k, k) for k in asked)
        raise ContainerError(f"{flags}: resource limits need a cgroup this user can write; "
                             "this host gives none to ordinary users (cgroup v1, or v2 without "
                             "delegation): drop the flag or run as root")


def adapt(spec: dict[str, Any], host: dict[str, Any]) -> None:
    """Edit the bundle's config in place for a rootless container."""
    refuse_resources(host.get("Resources") or {})
    linux = spec.setdefault("linux", {})
    res = linux.get("resources") or {}
    res.pop("devices", None)
    linux["resources"] = res
    nss = [n for n in linux.get("namespaces", []) if n.get("type") != "user"]
    linux["namespaces"] = [*nss, {"type": "user"}]
    linux["uidMappings"] = _identity("uid_map")
    linux["gidMappings"] = _identity("gid_map")
    ngids = sum(m["size"] for m in linux["gidMappings"])
    for m in spec.get("mounts") or []:  # devpts' gid=5 (tty) exists only with a range
        if m.get("type") == "devpts" and ngids <= 5:
            m["options"] = [o for o in m.get("options") or [] if not o.startswith("gid=")]
    user = (spec.get("process") or {}).get("user") or {}
    if ngids == 1:  # setgroups(2) is denied where only one gid is mapped
        user.pop("additionalGids", None)
    sysctl = linux.get("sysctl") or {}
    if "net.ipv4.ping_group_range" in sysctl:  # both ends must be gids of the namespace
        sysctl["net.ipv4.ping_group_range"] = f"0 {ngids - 1}"
    # sysfs needs a network namespace of our own; with the host's, bind it read-only
    if not any(n.get("type") == "network" for n in nss):
        for m in spec.get("mounts") or []:
            if m.get("type") == "sysfs":
                m.update(type="bind", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])
