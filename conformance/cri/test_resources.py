"""LinuxContainerResources through the CRI: the limits show in the container's cgroup files
(cgroup v1 here), UpdateContainerResources changes them live, ContainerStats reads usage, and
a process over its memory limit is OOM-killed and reported as OOMKilled; both handlers."""

from __future__ import annotations

import os

import pytest

from conformance.cri.client import pb
from conformance.engines.conftest import cgroup_of, read

MiB = 1024 * 1024
SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']


def _v1(pid: int, ctrl: str, name: str) -> str | None:
    path = cgroup_of(pid, ctrl)
    if path is None or not os.path.exists(os.path.join(path, name)):
        return None
    return read(os.path.join(path, name))


def _need_v1(*files: str) -> None:
    for f in files:
        ctrl = f.split(".")[0]
        if not os.path.exists(os.path.join("/sys/fs/cgroup", ctrl, f)):
            pytest.skip(f"this host's cgroup v1 has no {ctrl}/{f}")


def test_limits_in_cgroup_and_update(pods, handler):
    _need_v1("memory.limit_in_bytes", "cpu.cfs_quota_us", "cpu.shares")
    pod = pods.run(handler, "limits")
    res = pb.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                     memory_limit_in_bytes=64 * MiB)
    cid = pods.start(pod, "box", SLEEPER, resources=res)
    pid = pods.pid(cid)
    assert cgroup_of(pid, "memory").endswith(f"{pod.cgroup_rel}/{cid}")
    assert _v1(pid, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert _v1(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _v1(pid, "cpu", "cpu.cfs_period_us") == "100000"
    assert _v1(pid, "cpu", "cpu.shares") == "512"

    pods.cri.update(cid, pb.LinuxContainerResources(
        cpu_period=100000, cpu_quota=20000, cpu_shares=256, memory_limit_in_bytes=96 * MiB))
    assert _v1(pid, "memory", "memory.limit_in_bytes") == str(96 * MiB)
    assert _v1(pid, "cpu", "cpu.cfs_quota_us") == "20000"
    assert _v1(pid, "cpu", "cpu.shares") == "256"
    st = pods.status(cid)
    assert st.resources.linux.memory_limit_in_bytes == 96 * MiB, st
    assert st.resources.linux.cpu_quota == 20000, st

    stats = pods.cri.stats(cid)
    assert 0 < stats.memory.working_set_bytes.value < 96 * MiB
    assert stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.writable_layer.used_bytes.value >= 0


def test_over_memory_limit_is_oom_killed(pods, handler):
    _need_v1("memory.limit_in_bytes", "memory.oom_control")
    pod = pods.run(handler, "oom")
    res = pb.LinuxContainerResources(memory_limit_in_bytes=32 * MiB,
                                     memory_swap_limit_in_bytes=32 * MiB)
    # the shell holds ~200 MB in a variable: far over 32 MiB
    cid = pods.start(pod, "hog", ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); "
                                              "echo survived ${#x}"], resources=res)
    st = pods.wait_exited(cid, timeout=60)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 137, "OOMKilled"), st
    assert not any("survived" in x for _, _, x in pods.log_lines(pod, "hog"))
