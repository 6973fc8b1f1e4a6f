"""The runtime-spec v1.1+ per-process attributes: process.scheduler, process.ioPriority,
process.execCPUAffinity, linux.personality and linux.memoryPolicy.

`check_process` and `check_linux` validate (create, exec --process) and raise ConfigError
naming the JSON path; `apply` runs in the container's process before it drops privileges,
for the init and for every exec'd process; `set_affinity` is exec's (the spec keeps
execCPUAffinity off the init). Imported only when a config uses one of these fields.
"""

from __future__ import annotations

import os

from runtime.errors import ConfigError, PyruncError
from runtime.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
_RT = ("SCHED_FIFO", "SCHED_RR")
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
              "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
              "MPOL_F_STATIC_NODES": 1 << 15}
_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
               "MPOL_PREFERRED_MANY")
_MAX_ID = 1 << 16  # far above any CPU or NUMA node number Linux supports


def _want(cond: bool, path: str, problem: str) -> None:
    if not cond:
        raise ConfigError(path, problem)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _name(v: Any, table: dict[str, int]) -> bool:
    return isinstance(v, str) and v in table


def parse_list(text: Any, path: str, what: str) -> list[int]:
    """A cpu/node list such as "0-3,7" as sorted numbers; ConfigError naming `path`."""
    _want(isinstance(text, str), path, "must be a string such as \"0-3,7\"")
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        hi = hi if dash else lo
        _want(all(x.isascii() and x.isdigit() for x in (lo, hi)), path,
              f"{text!r} is not a {what} list such as \"0-3,7\"")
        a, b = int(lo), int(hi)
        _want(a <= b < _MAX_ID, path, f"bad {what} range {part!r} in {text!r}")
        out.update(range(a, b + 1))
    return sorted(out)


def check_process(proc: dict[str, Any], p: str) -> None:
    if proc.get("scheduler") is not None:
        _check_scheduler(proc["scheduler"], f"{p}.scheduler")
    if proc.get("ioPriority") is not None:
        io, ip = proc["ioPriority"], f"{p}.ioPriority"
        _want(isinstance(io, dict), ip, "must be an object")
        _want(_name(io.get("class"), IOPRIO_CLASSES), f"{ip}.class",
              f"must be one of {', '.join(IOPRIO_CLASSES)}")
        _want(_int(io.get("priority")) and 0 <= io["priority"] <= 7, f"{ip}.priority",
              "must be an integer from 0 to 7")
    if proc.get("execCPUAffinity") is not None:
        aff, ap = proc["execCPUAffinity"], f"{p}.execCPUAffinity"
        _want(isinstance(aff, dict), ap, "must be an object")
        for k in ("initial", "final"):
            if aff.get(k):
                parse_list(aff[k], f"{ap}.{k}", "CPU")
            else:
                _want(aff.get(k) in ("", None), f"{ap}.{k}",
                      "must be a string such as \"0-3,7\"")


def _check_scheduler(s: Any, sp: str) -> None:
    _want(isinstance(s, dict), sp, "must be an object")
    pol = s.get("policy")
    _want(_name(pol, SCHED_POLICIES), f"{sp}.policy", f"must be one of {', '.join(SCHED_POLICIES)}")
    _want(pol != "SCHED_ISO", f"{sp}.policy", "SCHED_ISO is not implemented by Linux")
    nice, prio = s.get("nice", 0), s.get("priority", 0)
    _want(_int(nice) and -20 <= nice <= 19, f"{sp}.nice", "must be an integer from -20 to 19")
    if pol in _RT:
        _want(_int(prio) and 1 <= prio <= 99, f"{sp}.priority",
              f"{pol} needs a priority from 1 to 99")
    else:
        _want(_int(prio) and prio == 0, f"{sp}.priority", f"must be 0 (or absent) for {pol}")
    flags = s.get("flags", [])
    _want(isinstance(flags, list), f"{sp}.flags", "must be an array of strings")
    for i, f in enumerate(flags):
        _want(_name(f, SCHED_FLAGS), f"{sp}.flags[{i}]", f"unknown scheduler flag {f!r}")
    for k in ("runtime", "deadline", "period"):
        v = s.get(k, 0)
        _want(_int(v) and 0 <= v < 1 << 63, f"{sp}.{k}", "must be a non-negative integer (ns)")
    if pol == "SCHED_DEADLINE":
        rt, dl = s.get("runtime", 0), s.get("deadline", 0)
        per = s.get("period", 0) or dl
        _want(rt >= 1024, f"{sp}.runtime", "SCHED_DEADLINE needs a runtime of at least 1024 ns")
        _want(rt <= dl <= per, f"{sp}.deadline",
              "SCHED_DEADLINE needs runtime <= deadline <= period")


def check_linux(linux: dict[str, Any]) -> None:
    if linux.get("personality") is not None:
        pers, pp = linux["personality"], "linux.personality"
        _want(isinstance(pers, dict), pp, "must be an object")
        _want(_name(pers.get("domain"), PERSONALITY_DOMAINS), f"{pp}.domain",
              f"must be one of {', '.join(PERSONALITY_DOMAINS)}")
        flags = pers.get("flags", [])
        _want(isinstance(flags, list), f"{pp}.flags", "must be an array of strings")
        if flags:
            raise ConfigError(f"{pp}.flags", f"{flags[0]!r} is not supported (the spec "
                              "defines no personality flags yet)")
    if linux.get("memoryPolicy") is not None:
        _check_mempolicy(linux["memoryPolicy"], "linux.memoryPolicy")


def _check_mempolicy(m: Any, mp: str) -> None:
    _want(isinstance(m, dict), mp, "must be an object")
    mode = m.get("mode")
    _want(_name(mode, MPOL_MODES), f"{mp}.mode", f"must be one of {', '.join(MPOL_MODES)}")
    raw = m.get("nodes", "")
    _want(isinstance(raw, str), f"{mp}.nodes", "must be a string such as \"0-1,3\"")
    nodes = parse_list(raw, f"{mp}.nodes", "node") if raw else []
    if mode in _NO_NODES:
        _want(not nodes, f"{mp}.nodes", f"must be empty for {mode}")
    elif mode in _NEED_NODES:
        _want(bool(nodes), f"{mp}.nodes", f"{mode} needs at least one node")
    elif mode == "MPOL_PREFERRED":
        _want(len(nodes) <= 1, f"{mp}.nodes", "MPOL_PREFERRED takes one node")
    flags = m.get("flags", [])
    _want(isinstance(flags, list), f"{mp}.flags", "must be an array of strings")
    for i, f in enumerate(flags):
        _want(_name(f, MPOL_FLAGS), f"{mp}.flags[{i}]", f"unknown memory policy flag {f!r}")
    _want(not ({"MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"} <= set(flags)), f"{mp}.flags",
          "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")
    _want(not flags or mode != "MPOL_DEFAULT", f"{mp}.flags", "MPOL_DEFAULT takes no flags")


def apply(proc: dict[str, Any], linux: dict[str, Any]) -> None:
    """In the container's process, still privileged, before seccomp and execve: the memory
    policy, the I/O priority, the scheduler, then the personality. The kernel's refusal is
    reported with the JSON path and what the host lacks."""
    if linux.get("memoryPolicy"):
        _apply_mempolicy(linux["memoryPolicy"])
    if proc.get("ioPriority"):
        io = proc["ioPriority"]
        try:
            sc.ioprio_set(IOPRIO_CLASSES[io["class"]] << 13 | io["priority"])
        except OSError as e:
            hint = (" (IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE in the host's user "
                    "namespace)" if e.errno == 1 else "")
            raise PyruncError(f"process.ioPriority: cannot set {io['class']} priority "
                              f"{io['priority']}: {_why(e)}{hint}") from None
    if proc.get("scheduler"):
        _apply_scheduler(proc["scheduler"])
    if linux.get("personality"):
        dom = linux["personality"]["domain"]
        try:
            sc.personality(PERSONALITY_DOMAINS[dom])
        except OSError as e:
            raise PyruncError(f"linux.personality: cannot set {dom}: "
                              f"{_why(e)}") from None


def _apply_mempolicy(m: dict[str, Any]) -> None:
    mode = m["mode"]
    nodes = parse_list(m["nodes"], "linux.memoryPolicy.nodes", "node") if m.get("nodes") else []
    flags = 0
    for f in m.get("flags", []):
        flags |= MPOL_FLAGS[f]
    try:
        sc.set_mempolicy(MPOL_MODES[mode] | flags, nodes)
    except OSError as e:
        hint = ""
        if e.errno == 22:  # EINVAL
            hint = (f" (nodes with memory here: {_read('/sys/devices/system/node/has_memory')};"
                    " some modes and flags need a newer kernel)")
        raise PyruncError(f"linux.memoryPolicy: cannot set {mode} nodes "
                          f"{m.get('nodes') or '(none)'}: {_why(e)}{hint}") from None


def _apply_scheduler(s: dict[str, Any]) -> None:
    pol = s["policy"]
    flags = 0
    for f in s.get("flags", []):
        flags |= SCHED_FLAGS[f]
    try:
        sc.sched_setattr(SCHED_POLICIES[pol], flags, s.get("nice", 0), s.get("priority", 0),
                         s.get("runtime", 0), s.get("deadline", 0), s.get("period", 0))
    except OSError as e:
        hint = ""
        if e.errno == 1 and pol in _RT:  # EPERM
            hint = (" (needs CAP_SYS_NICE in the host's user namespace and, with RT group "
                    "scheduling, realtime runtime in the container's cpu cgroup: "
                    "linux.resources.cpu.realtimeRuntime)")
        elif e.errno == 1:
            hint = " (needs CAP_SYS_NICE in the host's user namespace)"
        elif e.errno == 16:  # EBUSY
            hint = " (the kernel's deadline admission control has no bandwidth left)"
        elif e.errno in (22, 95):  # EINVAL, EOPNOTSUPP
            hint = " (the kernel rejects these parameters or flags)"
        raise PyruncError(f"process.scheduler: cannot set {pol}: "
                          f"{_why(e)}{hint}") from None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "none"
    except OSError:
        return "unknown"


def set_affinity(pid: int, aff: dict[str, Any], which: str) -> None:
    """exec's process.execCPUAffinity: `initial` on the runtime's side before the cgroup
    move, `final` after it; an absent `final` (with an `initial`) restores the default: all
    CPUs, which the kernel narrows to the cgroup's cpuset."""
    path = f"process.execCPUAffinity.{which}"
    if aff.get(which):
        cpus = parse_list(aff[which], path, "CPU")
    elif which == "final" and aff.get("initial"):
        possible = _read("/sys/devices/system/cpu/possible")
        cpus = (parse_list(possible, path, "CPU") if possible[:1].isdigit()
                else list(range(os.cpu_count() or 1)))
    else:
        return
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError as e:
        raise PyruncError(f"{path}: cannot run on CPUs {aff.get(which) or 'all'}: "
                          f"{_why(e)} (online: "
                          f"{_read('/sys/devices/system/cpu/online')})") from None


def _why(e: OSError) -> str:
    """The errno's text (the syscall seam's message also names the call)."""
    return os.strerror(e.errno) if e.errno is not None else str(e)
