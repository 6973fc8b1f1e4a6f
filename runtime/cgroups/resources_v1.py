"""linux.resources -> cgroup v1 files. A setting whose controller is missing is an error."""

from __future__ import annotations

from runtime.cgroups.manager import write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# Devices every container may use whatever the config says (runc's list).
DEFAULT_ALLOWED = [
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
]


def _need(paths: dict[str, str], ctrl: str, field: str) -> str:
    if ctrl not in paths:
        raise PyruncError(f"linux.resources.{field}: the {ctrl} cgroup controller is not "
                          "mounted on this host")
    return paths[ctrl]


def device_rule(d: dict[str, Any]) -> str:
    t = d.get("type", "a") or "a"
    if t == "a":
        return "a"
    major = "*" if d.get("major") in (None, -1) else str(d["major"])
    minor = "*" if d.get("minor") in (None, -1) else str(d["minor"])
    return f"{t} {major}:{minor} {d.get('access') or 'rwm'}"


def apply(paths: dict[str, str], r: dict[str, Any]) -> None:
    mem = r.get("memory") or {}
    if mem:
        p = _need(paths, "memory", "memory")
        if mem.get("limit") is not None:
            write(p, "memory.limit_in_bytes", str(mem["limit"]))
        if mem.get("reservation") is not None:
            write(p, "memory.soft_limit_in_bytes", str(mem["reservation"]))
        if mem.get("swap") is not None:
            write(p, "memory.memsw.limit_in_bytes", str(mem["swap"]))
        if mem.get("swappiness") is not None:
            write(p, "memory.swappiness", str(mem["swappiness"]))
        if mem.get("disableOOMKiller"):
            write(p, "memory.oom_control", "1")
    pids = r.get("pids") or {}
    if pids.get("limit") is not None:
        p = _need(paths, "pids", "pids")
        write(p, "pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]))
    cpu = r.get("cpu") or {}
    if cpu:
        if cpu.get("shares") is not None:
            write(_need(paths, "cpu", "cpu.shares"), "cpu.shares", str(cpu["shares"]))
        if cpu.get("period") is not None:
            write(_need(paths, "cpu", "cpu.period"), "cpu.cfs_period_us", str(cpu["period"]))
        if cpu.get("quota") is not None:
            write(_need(paths, "cpu", "cpu.quota"), "cpu.cfs_quota_us", str(cpu["quota"]))
        if cpu.get("cpus"):
            write(_need(paths, "cpuset", "cpu.cpus"), "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            write(_need(paths, "cpuset", "cpu.mems"), "cpuset.mems", cpu["mems"])
    devices = r.get("devices")
    if devices is not None and "devices" in paths:
        p = paths["devices"]
        for d in devices:
            write(p, "devices.allow" if d.get("allow") else "devices.deny", device_rule(d))
        for rule in DEFAULT_ALLOWED:
            write(p, "devices.allow", rule)
