"""linux.resources -> cgroup v2 files (memory.*, cpu.*, cpuset.*, pids.max, io.*, hugetlb.*,
rdma.max, unified). Zero or absent leaves a setting alone, as in runc.

A setting v2 has no file for (swappiness, disableOOMKiller, kernelTCP, realtime, net_cls,
net_prio, leaf weights), or whose controller is not enabled in this cgroup, is an error naming
the controller. Device rules become an eBPF program (runtime/cgroups/devices_bpf.py).
"""

from __future__ import annotations

import os

from runtime.cgroups.common import number, read, write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _need(path: str, filename: str, field: str) -> None:
    """`filename` must exist in the cgroup; its prefix names the controller."""
    if not os.path.exists(os.path.join(path, filename)):
        ctrl = filename.split(".", 1)[0]
        raise PyruncError(f"linux.resources.{field}: the {ctrl} cgroup v2 controller is not "
                          f"available in {path} ({filename} missing: controller not enabled "
                          "or not supported by the kernel)")


def _no_v2(field: str, ctrl: str, why: str) -> PyruncError:
    return PyruncError(f"linux.resources.{field}: {why} on cgroup v2 (the {ctrl} controller "
                       "has no such setting)")


def _set(v: Any, field: str) -> int:
    return 0 if v is None else number(v, field)


def shares_to_weight(shares: int) -> int:
    """The kernel-documented conversion runc uses: [2, 262144] -> [1, 10000]."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def blkio_to_io_weight(weight: int) -> int:
    """blkio weight [10, 1000] -> io.weight [1, 10000], as runc converts it."""
    return 1 + (weight - 10) * 9999 // 990 if weight else 0


def swap_to_v2(swap: int, limit: int) -> int:
    """The spec's swap is memory+swap; memory.swap.max is swap alone."""
    if swap == -1:
        return -1
    if limit == 0:
        raise PyruncError("linux.resources.memory.swap: a swap limit needs a memory limit on "
                          "cgroup v2")
    if limit == -1:
        raise PyruncError("linux.resources.memory.swap: a finite swap limit with an unlimited "
                          "memory limit can't be expressed on cgroup v2")
    if swap < limit:
        raise PyruncError(f"linux.resources.memory.swap: {swap} is below the memory limit "
                          f"{limit} (swap is memory+swap)")
    return swap - limit


def enable_controllers(root: str, path: str, wanted: list[str] | None = None) -> None:
    """Enable controllers in cgroup.subtree_control of every ancestor of `path` below the
    mount `root` (the parent of a cgroup decides which controller files it gets). All that
    each parent offers, or only `wanted`. Best effort, like runc: a controller that can't be
    enabled shows up later as a missing file, and that error names it."""
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return
    parts = [] if rel == "." else rel.split("/")
    cur = root
    for part in parts:
        have = (read(cur, "cgroup.controllers") or "").split()
        on = set((read(cur, "cgroup.subtree_control") or "").split())
        want = [c for c in have if c not in on and (wanted is None or c in wanted)]
        if want:
            try:
                write(cur, "cgroup.subtree_control", " ".join("+" + c for c in want))
            except PyruncError:
                for c in want:
                    try:
                        write(cur, "cgroup.subtree_control", "+" + c)
                    except PyruncError:
                        pass
        cur = os.path.join(cur, part)


def apply(path: str, r: dict[str, Any], warn: Callable[[str], None] | None = None,
          root: str | None = None) -> None:
    if not isinstance(r, dict):
        raise PyruncError("linux.resources: must be an object")
    _memory(path, r.get("memory") or {}, warn)
    _cpu(path, r.get("cpu") or {})
    limit = _set((r.get("pids") or {}).get("limit"), "pids.limit")
    if limit:
        _need(path, "pids.max", "pids.limit")
        write(path, "pids.max", "max" if limit < 0 else str(limit))
    _io(path, r.get("blockIO") or {})
    if r.get("hugepageLimits"):
        hugetlb(path, r["hugepageLimits"])
    net = r.get("network") or {}
    if net.get("classID") is not None or net.get("priorities"):
        raise _no_v2("network", "net_cls/net_prio", "network classID and priorities are "
                     "cgroup v1 controllers and unavailable")
    for dev, lim in (r.get("rdma") or {}).items():
        from runtime.cgroups.resources_common import rdma_line
        _need(path, "rdma.max", "rdma")
        write(path, "rdma.max", rdma_line(dev, lim or {}))
    if r.get("devices") is not None:
        from runtime.cgroups import devices_bpf
        devices_bpf.apply(path, r["devices"])
    if r.get("unified"):
        unified(path, r["unified"], root)


def _memory(path: str, mem: dict[str, Any], warn: Callable[[str], None] | None) -> None:
    if _set(mem.get("kernel"), "memory.kernel") and warn:
        warn("linux.resources.memory.kernel: kernel memory limits are deprecated by the "
             "kernel and ignored (as runc does)")
    if _set(mem.get("kernelTCP"), "memory.kernelTCP"):
        raise _no_v2("memory.kernelTCP", "memory", "a separate TCP buffer limit is unavailable")
    sw = mem.get("swappiness")
    if sw is not None and number(sw, "memory.swappiness") != -1:
        raise _no_v2("memory.swappiness", "memory", "per-cgroup swappiness is unavailable")
    if mem.get("disableOOMKiller"):
        raise _no_v2("memory.disableOOMKiller", "memory", "the OOM killer can't be disabled")
    limit = _set(mem.get("limit"), "memory.limit")
    swap = _set(mem.get("swap"), "memory.swap")
    reservation = _set(mem.get("reservation"), "memory.reservation")
    if limit and mem.get("checkBeforeUpdate") and limit > 0:
        usage = read(path, "memory.current")
        if usage and int(usage) > limit:
            raise PyruncError(f"linux.resources.memory.limit: {limit} is below the current "
                              f"usage {usage} (checkBeforeUpdate)")
    if swap:
        v = swap_to_v2(swap, limit)
        if not os.path.exists(os.path.join(path, "memory.swap.max")):
            if v != -1:  # unlimited is what a kernel without swap accounting gives anyway
                _need(path, "memory.swap.max", "memory.swap")
        else:  # v2 counts swap apart from memory, so the order of the writes is free
            write(path, "memory.swap.max", "max" if v == -1 else str(v))
    if limit:
        _need(path, "memory.max", "memory.limit")
        write(path, "memory.max", "max" if limit < 0 else str(limit))
    if reservation:
        _need(path, "memory.low", "memory.reservation")
        write(path, "memory.low", "max" if reservation < 0 else str(reservation))


def _cpu(path: str, cpu: dict[str, Any]) -> None:
    if _set(cpu.get("realtimePeriod"), "cpu.realtimePeriod") or \
            _set(cpu.get("realtimeRuntime"), "cpu.realtimeRuntime"):
        raise _no_v2("cpu.realtimeRuntime", "cpu", "real-time group scheduling is unavailable")
    shares = _set(cpu.get("shares"), "cpu.shares")
    if shares:
        _need(path, "cpu.weight", "cpu.shares")
        write(path, "cpu.weight", str(shares_to_weight(shares)))
    quota = _set(cpu.get("quota"), "cpu.quota")
    period = _set(cpu.get("period"), "cpu.period")
    if quota or period:
        _need(path, "cpu.max", "cpu.quota")
        cur = (read(path, "cpu.max") or "max 100000").split()
        q = ("max" if quota < 0 else str(quota)) if quota else cur[0]
        write(path, "cpu.max", f"{q} {period or cur[1]}")
    if cpu.get("burst") is not None:
        _need(path, "cpu.max.burst", "cpu.burst")
        write(path, "cpu.max.burst", str(number(cpu["burst"], "cpu.burst")))
    if cpu.get("idle") is not None:
        _need(path, "cpu.idle", "cpu.idle")
        write(path, "cpu.idle", str(number(cpu["idle"], "cpu.idle")))
    for key in ("cpus", "mems"):
        if cpu.get(key):
            if not isinstance(cpu[key], str):
                raise PyruncError(f"linux.resources.cpu.{key}: must be a string")
            _need(path, f"cpuset.{key}", f"cpu.{key}")
            write(path, f"cpuset.{key}", cpu[key])


_IO_MAX = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
           ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))


def _dev(d: dict[str, Any], field: str) -> str:
    return f"{number(d.get('major'), field + '.major')}:{number(d.get('minor'), field + '.minor')}"


def _io(path: str, b: dict[str, Any]) -> None:
    if _set(b.get("leafWeight"), "blockIO.leafWeight") or \
            any(d.get("leafWeight") is not None for d in b.get("weightDevice") or []):
        raise _no_v2("blockIO.leafWeight", "io", "leaf weights are unavailable")
    bfq = os.path.exists(os.path.join(path, "io.bfq.weight"))
    weight = _set(b.get("weight"), "blockIO.weight")
    if weight:
        if bfq:  # BFQ takes the blkio range as is
            write(path, "io.bfq.weight", str(weight))
        else:
            _need(path, "io.weight", "blockIO.weight")
            write(path, "io.weight", f"default {blkio_to_io_weight(weight)}")
    for d in b.get("weightDevice") or []:
        if d.get("weight") is None:
            continue
        w = number(d["weight"], "blockIO.weightDevice.weight")
        dev = _dev(d, "blockIO.weightDevice")
        if bfq:
            write(path, "io.bfq.weight", f"{dev} {w}")
        else:
            _need(path, "io.weight", "blockIO.weightDevice")
            write(path, "io.weight", f"{dev} {blkio_to_io_weight(w)}")
    for key, word in _IO_MAX:
        for d in b.get(key) or []:
            _need(path, "io.max", f"blockIO.{key}")
            rate = number(d.get("rate"), f"blockIO.{key}.rate")
            write(path, "io.max", f"{_dev(d, 'blockIO.' + key)} {word}={rate or 'max'}")


def hugetlb(path: str, limits: list[dict[str, Any]]) -> None:
    for h in limits:
        size = h.get("pageSize")
        if not isinstance(size, str) or "/" in size:
            raise PyruncError(f"linux.resources.hugepageLimits: bad pageSize {size!r}")
        limit = number(h.get("limit"), "hugepageLimits.limit")
        name = f"hugetlb.{size}.max"
        _need(path, name, f"hugepageLimits[{size}]")
        write(path, name, str(limit))
        rsvd = f"hugetlb.{size}.rsvd.max"
        if os.path.exists(os.path.join(path, rsvd)):
            write(path, rsvd, str(limit))


def unified(path: str, values: dict[str, Any], root: str | None, hybrid: bool = False) -> None:
    """Write linux.resources.unified: each key is a file of the cgroup. A controller's file
    that is missing gets its controller enabled in the parents (if the host offers it)."""
    for key, value in values.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith(".") \
                or "." not in key:
            raise PyruncError(f"linux.resources.unified: bad key {key!r}")
        if not isinstance(value, str):
            raise PyruncError(f"linux.resources.unified.{key}: value must be a string")
        ctrl = key.split(".", 1)[0]
        if key in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control",
                   "cgroup.kill", "cgroup.freeze"):
            raise PyruncError(f"linux.resources.unified.{key}: not a resource setting")
        if not os.path.exists(os.path.join(path, key)) and ctrl != "cgroup" and root:
            enable_controllers(root, path, [ctrl])
        if not os.path.exists(os.path.join(path, key)):
            if hybrid:  # runc refuses unified on any v1 host with these words
                raise PyruncError(f"invalid configuration: linux.resources.unified.{key}: the "
                                  f"{ctrl} controller is not in the cgroup2 mount beside the v1 "
                                  f"hierarchies ({key} missing); this needs cgroup v2")
            raise PyruncError(f"linux.resources.unified.{key}: the {ctrl} cgroup v2 controller "
                              f"is not available in {path} ({key} missing)")
        write(path, key, value)
