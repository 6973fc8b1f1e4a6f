"""What this host offers, probed once per test session: the one place tests ask.

Machines of the same kind differ (disk scheduler, cgroup files, kernel modules, LSMs, the
bounding set), so a test never assumes the host it was written on. It asks here, and where a
feature is missing it tests the runtime's clear refusal instead of the effect, or skips with
`need()`, whose message names the missing feature as the probe saw it.

Every probe is cached, cheap, and leaves nothing behind (a probe cgroup is removed at once).
`summary()` is printed in pytest's header, so a CI log says what the suite saw.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid

import pytest

CGROOT = "/sys/fs/cgroup"
UNIFIED = os.path.join(CGROOT, "unified")
V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
                  "memory", "net_cls", "net_prio", "perf_event", "pids", "rdma", "misc")
# CAP_SYS_RESOURCE and friends, as numbered in linux/capability.h
CAP_NUMBERS = {"CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_SYS_NICE": 23,
               "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19, "CAP_MKNOD": 27}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


# -- cgroups ------------------------------------------------------------------------------

@functools.cache
def v1_controllers() -> frozenset[str]:
    """Controllers mounted as their own v1 hierarchy under /sys/fs/cgroup/<name>."""
    out = set()
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        pre, _, post = line.partition(" - ")
        rest = post.split()
        if len(rest) >= 3 and rest[0] == "cgroup":
            out.update(o for o in rest[2].split(",") if o in V1_CONTROLLERS)
    return frozenset(out)


@functools.cache
def v1_files(controller: str) -> frozenset[str]:
    """The files a fresh child cgroup of that v1 controller has (empty if not mounted).
    Probed on a real child, since the root cgroup lacks some files (cpu.cfs_burst_us...)."""
    base = os.path.join(CGROOT, controller)
    if controller not in v1_controllers() or not os.path.isdir(base):
        return frozenset()
    probe = os.path.join(base, f"pyrunc-hostcaps-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(probe)
    except OSError:
        return frozenset(os.listdir(base))
    try:
        return frozenset(os.listdir(probe))
    finally:
        os.rmdir(probe)


def v1_has(controller: str, name: str) -> bool:
    return name in v1_files(controller)


@functools.cache
def cgroup2_controllers() -> frozenset[str]:
    """Controllers the cgroup2 mount (hybrid /sys/fs/cgroup/unified, or /sys/fs/cgroup on a
    v2-only host) offers."""
    for path in (UNIFIED, CGROOT):
        text = _read(os.path.join(path, "cgroup.controllers"))
        if text is not None:
            return frozenset(text.split())
    return frozenset()


def cgroup2_mount() -> str | None:
    for path in (UNIFIED, CGROOT):
        if os.path.exists(os.path.join(path, "cgroup.controllers")):
            return path
    return None


def blkio_weight_file() -> str | None:
    """The v1 blkio weight file this host has: blkio.weight (CFQ), blkio.bfq.weight (BFQ),
    or None when no disk scheduler offers weights (mq-deadline, kyber, none)."""
    for name in ("blkio.bfq.weight", "blkio.weight"):
        if v1_has("blkio", name):
            return name
    return None


@functools.cache
def root_disk() -> tuple[int, int] | None:
    """(major, minor) of the whole disk under /, or None if / is not on one."""
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)
    if os.path.exists(f"/sys/dev/block/{major}:{minor}/queue"):
        return major, minor
    return None


def disk_scheduler(major: int, minor: int) -> str:
    """The active scheduler of a disk, e.g. 'mq-deadline' ('' if unknown)."""
    text = _read(f"/sys/dev/block/{major}:{minor}/queue/scheduler") or ""
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text.strip()


@functools.cache
def hugetlb_sizes() -> tuple[str, ...]:
    """Huge page sizes the kernel offers, smallest first, as the runtime-spec names them
    ('2MB', '1GB')."""
    base = "/sys/kernel/mm/hugepages"
    kbs = sorted(int(e.split("-")[1].rstrip("kB"))
                 for e in (os.listdir(base) if os.path.isdir(base) else []))
    return tuple(f"{kb >> 10}MB" if kb < 1 << 20 else f"{kb >> 20}GB" for kb in kbs)


# -- kernel, LSMs, capabilities, network ----------------------------------------------------

@functools.cache
def possible_cpus() -> int:
    """How many cpus the kernel could ever bring online (/sys/devices/system/cpu/possible)."""
    text = (_read("/sys/devices/system/cpu/possible") or "0").strip()
    return int(text.split(",")[-1].split("-")[-1]) + 1


def has_namespace(kind: str) -> bool:
    """Whether the kernel has that namespace type ('time', 'cgroup', ... as /proc names it)."""
    return os.path.exists(f"/proc/self/ns/{kind}")


def apparmor_enabled() -> bool:
    return (_read("/sys/module/apparmor/parameters/enabled") or "").strip() == "Y"


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


@functools.cache
def bounding_set() -> int:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return 0


def has_cap(name: str) -> bool:
    return bool(bounding_set() >> CAP_NUMBERS[name] & 1)


@functools.cache
def netdev_driver(kind: str) -> bool:
    """Whether `ip link add ... type KIND` works (tried in a throwaway network namespace,
    so the host's links are never touched)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    extra = " peer name hc1" if kind == "veth" else ""
    p = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link add hc0 type {kind}{extra}"],
                       capture_output=True, timeout=20)
    return p.returncode == 0


def _routes() -> list[tuple[int, int]]:
    """(network, mask) of every IPv4 route in this network namespace, as integers in
    address order (10.0.0.0 -> 0x0A000000). /proc/net/route prints the raw little-endian
    words, so the hex reads back with '<I'."""
    import struct
    out = []
    for line in (_read("/proc/net/route") or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 8:
            out.append(tuple(struct.unpack(">I", bytes.fromhex(x)[::-1])[0]
                             for x in (f[1], f[7])))
    return out  # type: ignore[return-value]


def free_subnet(second_octet: int, tries: int = 50) -> str:
    """A random 10.SECOND.x.0/24 that no route of this host covers or overlaps (another
    machine may use 10/8 itself), e.g. for a test bridge."""
    import secrets
    routes = _routes()
    for _ in range(tries):
        third = secrets.randbelow(200) + 20
        net = (10 << 24) | (second_octet << 16) | (third << 8)
        mask = 0xFFFFFF00
        if not any(m and (net & m & mask) == (n & m & mask) for n, m in routes):
            return f"10.{second_octet}.{third}.0/24"
    raise RuntimeError(f"no free 10.{second_octet}.x.0/24 subnet on this host")


@functools.cache
def overlayfs() -> bool:
    return "overlay" in (_read("/proc/filesystems") or "")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


# -- for tests ------------------------------------------------------------------------------

def need(ok: bool, missing: str) -> None:
    """Skip the calling test unless `ok`; the message names the missing host feature."""
    if not ok:
        pytest.skip(f"host lacks {missing}")


def needs(ok: bool, missing: str):
    """The same as a mark, for parametrize/decorators."""
    return pytest.mark.skipif(not ok, reason=f"host lacks {missing}")


def summary() -> list[str]:
    """One line per probed feature, for pytest's report header."""
    disk = root_disk()
    sched = disk_scheduler(*disk) if disk else "(/ not on a whole disk)"
    caps = [n for n in sorted(CAP_NUMBERS) if not has_cap(n)]
    return [
        "host: cgroup v1 controllers: " + (" ".join(sorted(v1_controllers())) or "none"),
        f"host: cgroup2 at {cgroup2_mount()}: "
        + (" ".join(sorted(cgroup2_controllers())) or "no controllers"),
        f"host: root disk scheduler {sched}; blkio weight file: {blkio_weight_file()}",
        "host: memory.memsw (swap accounting): "
        f"{v1_has('memory', 'memory.memsw.limit_in_bytes')}; "
        f"cpu.rt_runtime_us: {v1_has('cpu', 'cpu.rt_runtime_us')}; "
        f"hugetlb sizes: {' '.join(hugetlb_sizes()) or 'none'}",
        f"host: time namespace: {has_namespace('time')}; apparmor: {apparmor_enabled()}; "
        f"selinux: {selinux_enabled()}; overlayfs: {overlayfs()}; "
        f"netdev dummy: {netdev_driver('dummy')}, veth: {netdev_driver('veth')}",
        "host: bounding set lacks: " + (" ".join(caps) or "nothing probed"),
    ]


if __name__ == "__main__":  # scripts/test.sh prints what the suite will find on this host
    print("\n".join(summary()))
