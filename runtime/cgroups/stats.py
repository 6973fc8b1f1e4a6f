"""Resource usage in the shape runc prints for `events --stats`:

    {"type": "stats", "id": ID, "data": {"cpu": {...}, "cpuset": {...}, "memory": {...},
     "pids": {...}, "blkio": {...}, "hugetlb": {...}, "intel_rdt": {}, "network_interfaces":
     null}}

Field names and which zero values are left out follow runc's types/events.go (its Go
`omitempty` tags), so consumers that parse runc's output parse ours. Files that a host lacks
give zeros, as in runc; the cgroup disappearing mid-read does too.
"""

from __future__ import annotations

import os

from runtime.cgroups.common import read

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

UINT64_MAX = 2**64 - 1


def _int(path: str | None, name: str) -> int:
    if not path:
        return 0
    v = read(path, name)
    if not v:
        return 0
    if v == "max":
        return UINT64_MAX
    try:
        return int(v.split()[0])
    except ValueError:
        return 0


def _kv(path: str | None, name: str) -> dict[str, int]:
    """A flat "key value" file (memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    text = read(path, name) if path else None
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _ints(path: str | None, name: str) -> list[int]:
    text = read(path, name) if path else None
    try:
        return [int(x) for x in (text or "").split()]
    except ValueError:
        return []


def _omit(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop the keys whose value is zero or empty (Go's omitempty)."""
    for k in keys:
        if not d.get(k):
            d.pop(k, None)
    return d


def parse_list(text: str | None) -> list[int]:
    """A cpuset list ("0-3,8,10-11") as numbers."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return []
    return out


def page_sizes(base: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """Huge page sizes the kernel supports, named as the hugetlb files name them ("2MB")."""
    try:
        names = os.listdir(base)
    except OSError:
        return []
    sizes = []
    for n in names:
        if n.startswith("hugepages-") and n.endswith("kB"):
            sizes.append(int(n[len("hugepages-"):-2]) * 1024)
    return [size_name(s) for s in sorted(sizes)]


def size_name(size: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = 0
    v = float(size)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:g}{units[i]}"


def _entry(limit: int, usage: int, peak: int, failcnt: int) -> dict[str, int]:
    return _omit({"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt},
                 "usage", "max")


def _cpuset(path: str | None, suffix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "cpus": parse_list(read(path, "cpuset.cpus" + suffix) if path else None),
        "cpu_exclusive": _int(path, "cpuset.cpu_exclusive"),
        "mems": parse_list(read(path, "cpuset.mems" + suffix) if path else None),
        "mem_hardwall": _int(path, "cpuset.mem_hardwall"),
        "mem_exclusive": _int(path, "cpuset.mem_exclusive"),
        "memory_migrate": _int(path, "cpuset.memory_migrate"),
        "memory_spread_page": _int(path, "cpuset.memory_spread_page"),
        "memory_spread_slab": _int(path, "cpuset.memory_spread_slab"),
        "memory_pressure": _int(path, "cpuset.memory_pressure"),
        "sched_load_balance": _int(path, "cpuset.sched_load_balance"),
        "sched_relax_domain_level": _int(path, "cpuset.sched_relax_domain_level"),
    }
    return _omit(out, "cpus", "mems")


def _pids(path: str | None) -> dict[str, int]:
    limit = _int(path, "pids.max")
    return _omit({"current": _int(path, "pids.current"),
                  "limit": 0 if limit == UINT64_MAX else limit}, "current", "limit")


def _blkio_entries(path: str | None, name: str) -> list[dict[str, Any]]:
    """Lines "MAJ:MIN Op value" (or "MAJ:MIN value"); the "Total" line is left out."""
    out = []
    text = read(path, name) if path else None
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0] or len(parts) not in (2, 3):
            continue
        major, _, minor = parts[0].partition(":")
        try:
            e = {"major": int(major), "minor": int(minor),
                 "op": parts[1] if len(parts) == 3 else "", "value": int(parts[-1])}
        except ValueError:
            continue
        out.append(_omit(e, "major", "minor", "op", "value"))
    return out


_BLKIO_V1 = (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
             ("ioServicedRecursive", "io_serviced_recursive"),
             ("ioQueueRecursive", "io_queued_recursive"),
             ("ioServiceTimeRecursive", "io_service_time_recursive"),
             ("ioWaitTimeRecursive", "io_wait_time_recursive"),
             ("ioMergedRecursive", "io_merged_recursive"),
             ("ioTimeRecursive", "time_recursive"),
             ("sectorsRecursive", "sectors_recursive"))


def _blkio_v1(path: str | None) -> dict[str, Any]:
    """CFQ's files when present, else BFQ's, else the throttle layer's (bytes and ios only),
    the order runc tries them in."""
    out: dict[str, Any] = {}
    if not path:
        return out
    if os.path.exists(os.path.join(path, "blkio.io_serviced_recursive")):
        prefix = "blkio."
    elif os.path.exists(os.path.join(path, "blkio.bfq.io_serviced_recursive")):
        prefix = "blkio.bfq."
    else:
        prefix = "blkio.throttle."
    for key, name in _BLKIO_V1:
        entries = _blkio_entries(path, prefix + name)
        if entries:
            out[key] = entries
    return out


def _hugetlb_v1(path: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not path:
        return out
    for size in page_sizes():
        if not os.path.exists(os.path.join(path, f"hugetlb.{size}.usage_in_bytes")):
            continue
        out[size] = _omit({"usage": _int(path, f"hugetlb.{size}.usage_in_bytes"),
                           "max": _int(path, f"hugetlb.{size}.max_usage_in_bytes"),
                           "failcnt": _int(path, f"hugetlb.{size}.failcnt")}, "usage", "max")
    return out


def _hugetlb_v2(path: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not path:
        return out
    for size in page_sizes():
        if not os.path.exists(os.path.join(path, f"hugetlb.{size}.current")):
            continue
        out[size] = _omit({"usage": _int(path, f"hugetlb.{size}.current"),
                           "failcnt": _kv(path, f"hugetlb.{size}.events").get("max", 0)},
                          "usage")
    return out


def _throttling(st: dict[str, int], time_key: str, scale: int) -> dict[str, int]:
    return _omit({"periods": st.get("nr_periods", 0),
                  "throttledPeriods": st.get("nr_throttled", 0),
                  "throttledTime": st.get(time_key, 0) * scale},
                 "periods", "throttledPeriods", "throttledTime")


def v1_stats(paths: dict[str, str]) -> dict[str, Any]:
    acct = paths.get("cpuacct")
    ticks = os.sysconf("SC_CLK_TCK") or 100
    times = _kv(acct, "cpuacct.stat")
    usage = _omit({"total": _int(acct, "cpuacct.usage"),
                   "percpu": _ints(acct, "cpuacct.usage_percpu"),
                   "percpu_kernel": _ints(acct, "cpuacct.usage_percpu_sys"),
                   "percpu_user": _ints(acct, "cpuacct.usage_percpu_user"),
                   "kernel": times.get("system", 0) * 1_000_000_000 // ticks,
                   "user": times.get("user", 0) * 1_000_000_000 // ticks},
                  "total", "percpu", "percpu_kernel", "percpu_user")
    cpu = {"usage": usage,
           "throttling": _throttling(_kv(paths.get("cpu"), "cpu.stat"), "throttled_time", 1)}

    mem = paths.get("memory")
    raw = dict(sorted(_kv(mem, "memory.stat").items()))

    def entry(prefix: str) -> dict[str, int]:
        return _entry(_int(mem, prefix + ".limit_in_bytes"), _int(mem, prefix + ".usage_in_bytes"),
                      _int(mem, prefix + ".max_usage_in_bytes"), _int(mem, prefix + ".failcnt"))

    memory: dict[str, Any] = {"cache": raw.get("cache", 0), "usage": entry("memory"),
                              "swap": entry("memory.memsw"), "kernel": entry("memory.kmem"),
                              "kernelTCP": entry("memory.kmem.tcp"), "raw": raw}
    hugetlb = _hugetlb_v1(paths.get("hugetlb"))
    if not hugetlb and "hugetlb" not in paths:
        hugetlb = _hugetlb_v2(paths.get("unified"))  # hybrid host: hugetlb lives on cgroup2
    return {"cpu": cpu, "cpuset": _cpuset(paths.get("cpuset")),
            "memory": _omit(memory, "cache", "raw"), "pids": _pids(paths.get("pids")),
            "blkio": _blkio_v1(paths.get("blkio")), "hugetlb": hugetlb, "intel_rdt": {},
            "network_interfaces": None}


def _io_v2(path: str) -> dict[str, Any]:
    """io.stat ("MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..") as v1-style entries."""
    nbytes: list[dict[str, Any]] = []
    nios: list[dict[str, Any]] = []
    for line in (read(path, "io.stat") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            target = {"rbytes": (nbytes, "Read"), "wbytes": (nbytes, "Write"),
                      "rios": (nios, "Read"), "wios": (nios, "Write")}.get(k)
            if target is None:
                continue
            try:
                e = {"major": int(major), "minor": int(minor), "op": target[1], "value": int(v)}
            except ValueError:
                continue
            target[0].append(_omit(e, "major", "minor", "value"))
    return _omit({"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": nios},
                 "ioServiceBytesRecursive", "ioServicedRecursive")


def v2_stats(path: str) -> dict[str, Any]:
    st = _kv(path, "cpu.stat")
    usage = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
             "user": st.get("user_usec", 0) * 1000}
    cpu = {"usage": _omit(usage, "total"),
           "throttling": _throttling(st, "throttled_usec", 1000)}
    raw = dict(sorted(_kv(path, "memory.stat").items()))
    mem_usage = _int(path, "memory.current")
    mem_limit = _int(path, "memory.max")
    usage_e = _entry(mem_limit, mem_usage, _int(path, "memory.peak"),
                     _kv(path, "memory.events").get("max", 0))
    swap_limit = _int(path, "memory.swap.max")
    # v1 reports swap as memory+swap; runc reports v2 the same way for compatibility.
    if swap_limit != UINT64_MAX:
        swap_limit = min(UINT64_MAX, swap_limit + mem_limit)
    swap_e = _entry(swap_limit, _int(path, "memory.swap.current") + mem_usage,
                    _int(path, "memory.swap.peak"),
                    _kv(path, "memory.swap.events").get("max", 0))
    memory: dict[str, Any] = {"cache": raw.get("file", 0), "usage": usage_e, "swap": swap_e,
                              "kernel": _entry(0, 0, 0, 0), "kernelTCP": _entry(0, 0, 0, 0),
                              "raw": raw}
    return {"cpu": cpu, "cpuset": _cpuset(path, ".effective"),
            "memory": _omit(memory, "cache", "raw"), "pids": _pids(path),
            "blkio": _io_v2(path), "hugetlb": _hugetlb_v2(path), "intel_rdt": {},
            "network_interfaces": None}
