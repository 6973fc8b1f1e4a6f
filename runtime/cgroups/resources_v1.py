"""linux.resources -> cgroup v1 files.

Zero (or an absent field) leaves a setting alone, as in runc, so `update` with a partial
LinuxResources only touches what it names. A setting the host can't apply (its controller
isn't mounted, or the kernel lacks the file) is an error naming the controller, never a skip.
"""

from __future__ import annotations

import errno
import os

from runtime.cgroups.common import number, read, write
from runtime.cgroups.resources_common import DEFAULT_ALLOWED, device_access, rdma_line
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _need(paths: dict[str, str], ctrl: str, field: str) -> str:
    if ctrl not in paths:
        raise PyruncError(f"linux.resources.{field}: the {ctrl} cgroup controller is not "
                          "mounted on this host")
    return paths[ctrl]


def _file(path: str, name: str, ctrl: str, field: str) -> str:
    """`path` when the kernel provides `name` there, else an error naming the controller."""
    if not os.path.exists(os.path.join(path, name)):
        raise PyruncError(f"linux.resources.{field}: the {ctrl} cgroup controller on this "
                          f"host has no {name} (kernel support missing)")
    return path


def _set(v: Any, field: str) -> int:
    """A numeric field's value, 0 when absent (0 means "leave alone")."""
    return 0 if v is None else number(v, field)


def device_rule(d: dict[str, Any]) -> str:
    t = d.get("type", "a") or "a"
    if t not in ("a", "b", "c"):
        raise PyruncError(f"linux.resources.devices: bad type {t!r} (a, b or c)")
    access = device_access(d.get("access"))
    if t == "a":
        return "a"
    major = "*" if d.get("major") in (None, -1) else str(number(d["major"], "devices.major"))
    minor = "*" if d.get("minor") in (None, -1) else str(number(d["minor"], "devices.minor"))
    return f"{t} {major}:{minor} {access}"


def apply(paths: dict[str, str], r: dict[str, Any], warn: Callable[[str], None] | None = None,
          unified_root: str | None = None) -> None:
    if not isinstance(r, dict):
        raise PyruncError("linux.resources: must be an object")
    _memory(paths, r.get("memory") or {}, warn)
    _cpu(paths, r.get("cpu") or {})
    pids = r.get("pids") or {}
    limit = _set(pids.get("limit"), "pids.limit")
    if limit:
        write(_need(paths, "pids", "pids"), "pids.max", "max" if limit < 0 else str(limit))
    _blkio(paths, r.get("blockIO") or {})
    if r.get("hugepageLimits"):
        _hugetlb(paths, r["hugepageLimits"], unified_root)
    _network(paths, r.get("network") or {})
    _rdma(paths, r.get("rdma") or {})
    if r.get("devices") is not None:
        _devices(paths, r["devices"])
    if r.get("unified"):
        _unified(paths, r["unified"], unified_root)


def _memory(paths: dict[str, str], mem: dict[str, Any], warn: Callable[[str], None] | None
            ) -> None:
    if _set(mem.get("kernel"), "memory.kernel") and warn:
        warn("linux.resources.memory.kernel: kernel memory limits are deprecated by the "
             "kernel and ignored (as runc does)")
    limit = _set(mem.get("limit"), "memory.limit")
    swap = _set(mem.get("swap"), "memory.swap")
    reservation = _set(mem.get("reservation"), "memory.reservation")
    tcp = _set(mem.get("kernelTCP"), "memory.kernelTCP")
    swappiness = mem.get("swappiness")
    if swappiness is not None and number(swappiness, "memory.swappiness") == -1:
        swappiness = None
    if not (limit or swap or reservation or tcp or swappiness is not None
            or mem.get("disableOOMKiller") or mem.get("useHierarchy") is not None):
        return
    p = _need(paths, "memory", "memory")
    if mem.get("checkBeforeUpdate") and limit > 0:
        usage = read(p, "memory.usage_in_bytes")
        if usage and int(usage) > limit:
            raise PyruncError(f"linux.resources.memory.limit: {limit} is below the current "
                              f"usage {usage} (checkBeforeUpdate)")
    _memory_and_swap(p, limit, swap)
    if reservation:
        write(p, "memory.soft_limit_in_bytes", str(reservation))
    if tcp:
        write(_file(p, "memory.kmem.tcp.limit_in_bytes", "memory", "memory.kernelTCP"),
              "memory.kmem.tcp.limit_in_bytes", str(tcp))
    if swappiness is not None:
        if not 0 <= swappiness <= 100:
            raise PyruncError(f"linux.resources.memory.swappiness: {swappiness} is out of "
                              "range 0-100")
        write(_file(p, "memory.swappiness", "memory", "memory.swappiness"),
              "memory.swappiness", str(swappiness))
    if mem.get("disableOOMKiller"):
        write(p, "memory.oom_control", "1")
    if mem.get("useHierarchy") is not None:
        write(p, "memory.use_hierarchy", "1" if mem["useHierarchy"] else "0")


def _memory_and_swap(p: str, limit: int, swap: int) -> None:
    """memory.limit_in_bytes and memory.memsw.limit_in_bytes (memory+swap), written in the
    order the kernel accepts: memsw may never be below the memory limit."""
    memsw = "memory.memsw.limit_in_bytes"
    if limit == -1 and swap == 0 and os.path.exists(os.path.join(p, memsw)):
        swap = -1  # unlimited memory implies unlimited swap
    if swap:
        _file(p, memsw, "memory", "memory.swap (swap accounting)")
    if limit and swap:
        if limit != -1 and swap != -1 and swap < limit:
            raise PyruncError(f"linux.resources.memory.swap: {swap} is below the memory "
                              f"limit {limit} (swap is memory+swap)")
        cur = read(p, "memory.limit_in_bytes")
        if swap == -1 or (cur is not None and int(cur) < swap):
            write(p, memsw, str(swap))
            write(p, "memory.limit_in_bytes", str(limit))
        else:
            write(p, "memory.limit_in_bytes", str(limit))
            write(p, memsw, str(swap))
    elif limit:
        write(p, "memory.limit_in_bytes", str(limit))
    elif swap:
        write(p, memsw, str(swap))


def _write_pair(p: str, first: tuple[str, int], second: tuple[str, int]) -> None:
    """Write two interdependent files (period/quota, rt period/runtime); when the kernel
    refuses the first (EINVAL: it would break the other), write them the other way round."""
    pairs = [x for x in (first, second) if x[1]]
    try:
        for name, v in pairs:
            _raw_write(p, name, str(v))
    except OSError as e:
        if e.errno != errno.EINVAL or len(pairs) < 2:
            raise PyruncError(f"cgroup {os.path.join(p, name)}: cannot write {v}: "
                              f"{e.strerror}") from None
        for name, v in reversed(pairs):
            write(p, name, str(v))


def _raw_write(path: str, name: str, value: str) -> None:
    with open(os.path.join(path, name), "w") as f:
        f.write(value)


def _cpu(paths: dict[str, str], cpu: dict[str, Any]) -> None:
    shares = _set(cpu.get("shares"), "cpu.shares")
    quota = _set(cpu.get("quota"), "cpu.quota")
    period = _set(cpu.get("period"), "cpu.period")
    burst = cpu.get("burst")
    rt_period = _set(cpu.get("realtimePeriod"), "cpu.realtimePeriod")
    rt_runtime = _set(cpu.get("realtimeRuntime"), "cpu.realtimeRuntime")
    idle = cpu.get("idle")
    if shares or quota or period or burst is not None or rt_period or rt_runtime \
            or idle is not None:
        p = _need(paths, "cpu", "cpu")
        if rt_period or rt_runtime:
            _file(p, "cpu.rt_period_us", "cpu", "cpu.realtimePeriod (RT group scheduling)")
            _write_pair(p, ("cpu.rt_period_us", rt_period), ("cpu.rt_runtime_us", rt_runtime))
        if shares:
            write(p, "cpu.shares", str(shares))
            got = int(read(p, "cpu.shares") or shares)
            if got != shares:
                bound = "maximum" if shares > got else "minimum"
                raise PyruncError(f"linux.resources.cpu.shares: {shares} is out of range; the "
                                  f"{bound} allowed cpu-shares is {got}")
        if period or quota:
            _write_pair(p, ("cpu.cfs_period_us", period), ("cpu.cfs_quota_us", quota))
        if burst is not None:
            write(_file(p, "cpu.cfs_burst_us", "cpu", "cpu.burst"), "cpu.cfs_burst_us",
                  str(number(burst, "cpu.burst")))
        if idle is not None:
            write(_file(p, "cpu.idle", "cpu", "cpu.idle"), "cpu.idle",
                  str(number(idle, "cpu.idle")))
    for key in ("cpus", "mems"):
        if cpu.get(key):
            if not isinstance(cpu[key], str):
                raise PyruncError(f"linux.resources.cpu.{key}: must be a string")
            write(_need(paths, "cpuset", f"cpu.{key}"), f"cpuset.{key}", cpu[key])


_THROTTLES = (("throttleReadBpsDevice", "read_bps_device"),
              ("throttleWriteBpsDevice", "write_bps_device"),
              ("throttleReadIOPSDevice", "read_iops_device"),
              ("throttleWriteIOPSDevice", "write_iops_device"))


def _dev(d: dict[str, Any], field: str) -> str:
    return f"{number(d.get('major'), field + '.major')}:{number(d.get('minor'), field + '.minor')}"


def _blkio(paths: dict[str, str], b: dict[str, Any]) -> None:
    weight = _set(b.get("weight"), "blockIO.weight")
    leaf = _set(b.get("leafWeight"), "blockIO.leafWeight")
    devs = b.get("weightDevice") or []
    if not (weight or leaf or devs or any(b.get(k) for k, _ in _THROTTLES)):
        return
    p = _need(paths, "blkio", "blockIO")
    # CFQ's files, or BFQ's when that is the scheduler; neither exists on hosts without.
    bfq = not os.path.exists(os.path.join(p, "blkio.weight")) and \
        os.path.exists(os.path.join(p, "blkio.bfq.weight"))
    wfile = "blkio.bfq.weight" if bfq else "blkio.weight"
    if weight:
        write(_file(p, wfile, "blkio", "blockIO.weight"), wfile, str(weight))
    if leaf:
        write(_file(p, "blkio.leaf_weight", "blkio", "blockIO.leafWeight"),
              "blkio.leaf_weight", str(leaf))
    for d in devs:
        dev = _dev(d, "blockIO.weightDevice")
        if d.get("weight") is not None:
            name = wfile + "_device"
            try:
                write(_file(p, name, "blkio", "blockIO.weightDevice"), name,
                      f"{dev} {number(d['weight'], 'blockIO.weightDevice.weight')}")
            except PyruncError as e:
                raise PyruncError(f"linux.resources.blockIO.weightDevice: the blkio controller "
                                  f"can't weight device {dev} (per-device weights need the "
                                  f"{'BFQ' if bfq else 'CFQ'} I/O scheduler on it): {e}"
                                  ) from None
        if d.get("leafWeight") is not None:
            write(_file(p, "blkio.leaf_weight_device", "blkio", "blockIO.weightDevice"),
                  "blkio.leaf_weight_device",
                  f"{dev} {number(d['leafWeight'], 'blockIO.weightDevice.leafWeight')}")
    for key, suffix in _THROTTLES:
        for d in b.get(key) or []:
            name = "blkio.throttle." + suffix
            write(_file(p, name, "blkio", f"blockIO.{key}"), name,
                  f"{_dev(d, 'blockIO.' + key)} {number(d.get('rate'), f'blockIO.{key}.rate')}")


def _hugetlb(paths: dict[str, str], limits: list[dict[str, Any]], unified_root: str | None
             ) -> None:
    if "hugetlb" not in paths and "unified" in paths and unified_root:
        # Hybrid host: hugetlb is bound to the cgroup2 mount, so use its v2 files there.
        from runtime.cgroups import resources_v2
        resources_v2.enable_controllers(unified_root, paths["unified"], ["hugetlb"])
        resources_v2.hugetlb(paths["unified"], limits)
        return
    p = _need(paths, "hugetlb", "hugepageLimits")
    for h in limits:
        size = h.get("pageSize")
        name = f"hugetlb.{size}.limit_in_bytes"
        write(_file(p, name, "hugetlb", f"hugepageLimits[{size}] (page size)"), name,
              str(number(h.get("limit"), "hugepageLimits.limit")))
        rsvd = f"hugetlb.{size}.rsvd.limit_in_bytes"
        if os.path.exists(os.path.join(p, rsvd)):
            write(p, rsvd, str(h["limit"]))


def _network(paths: dict[str, str], net: dict[str, Any]) -> None:
    if net.get("classID") is not None:
        write(_need(paths, "net_cls", "network.classID"), "net_cls.classid",
              str(number(net["classID"], "network.classID")))
    for prio in net.get("priorities") or []:
        write(_need(paths, "net_prio", "network.priorities"), "net_prio.ifpriomap",
              f"{prio.get('name')} {number(prio.get('priority'), 'network.priorities')}")


def _rdma(paths: dict[str, str], rdma: dict[str, Any]) -> None:
    for dev, lim in rdma.items():
        write(_need(paths, "rdma", "rdma"), "rdma.max", rdma_line(dev, lim or {}))


def check_device_rules(devices: list[dict[str, Any]]) -> None:
    """Refuse what the v1 kernel would silently ignore, as runc does: a rule agreeing with
    the default that would punch a hole in a wider exception (e.g. deny b 7:1 after
    allow b 7:*, under deny-all)."""
    default_allow = True
    exceptions: list[tuple[str, str, str]] = []
    for i, d in enumerate(devices):
        rule = device_rule(d)
        if rule == "a" or rule.startswith("a "):
            default_allow = bool(d.get("allow"))
            exceptions = []
            continue
        t, nums, _access = rule.split(" ")
        major, minor = nums.split(":")
        if bool(d.get("allow")) != default_allow:
            exceptions.append((t, major, minor))
            continue
        for et, emaj, emin in exceptions:
            wider = (emaj == "*" or emaj == major) and (emin == "*" or emin == minor)
            if et == t and wider and (emaj, emin) != (major, minor):
                raise PyruncError(f"linux.resources.devices[{i}]: cannot punch a hole in the "
                                  f"wildcard rule {et} {emaj}:{emin} (cgroup v1 devices)")
        exceptions = [e for e in exceptions if e != (t, major, minor)]


def _devices(paths: dict[str, str], devices: list[dict[str, Any]]) -> None:
    p = _need(paths, "devices", "devices")
    check_device_rules(devices)
    rules = [("devices.allow" if d.get("allow") else "devices.deny", device_rule(d))
             for d in devices]
    for name, rule in rules:
        write(p, name, rule)
    for rule in DEFAULT_ALLOWED:
        write(p, "devices.allow", rule)


def _unified(paths: dict[str, str], unified: dict[str, str], unified_root: str | None) -> None:
    """linux.resources.unified on a v1 host: only the cgroup2 mount beside the v1 hierarchies
    (hybrid) can take it, and only for files that exist there."""
    if "unified" not in paths or not unified_root:
        raise PyruncError("invalid configuration: linux.resources.unified: this host has "
                          "cgroup v1 only (no cgroup2 mount); unified settings need cgroup v2")
    from runtime.cgroups import resources_v2
    resources_v2.unified(paths["unified"], unified, unified_root, hybrid=True)
