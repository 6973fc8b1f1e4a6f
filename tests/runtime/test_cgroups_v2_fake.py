"""cgroup v2 controller logic over a FAKE cgroupfs tree.

Why fake: on this host the cgroup2 mount (/sys/fs/cgroup/unified) only offers hugetlb; memory,
pids, cpu, io and cpuset are bound to the v1 hierarchies and can't be enabled on v2. So these
tests build temp directories holding the files a v2 cgroup has and check what the v2 code
writes and reads there. A fake can't enforce anything, and writes to it don't trigger kernel
side effects (subtree_control doesn't make files appear, cgroup.freeze doesn't change
cgroup.events); the tests only claim file-level behaviour. The real cgroup.freeze and
cgroup.kill are tested on the real mount in tests/runtime/test_cgroups.py.
"""

from __future__ import annotations

import os

import pytest

from runtime.cgroups import load_manager, new_manager
from runtime.cgroups import resources_v2 as r2
from runtime.cgroups.events import V2OomWatcher
from runtime.cgroups.stats import UINT64_MAX, page_sizes, v2_stats
from runtime.cgroups.v1 import V1Manager
from runtime.cgroups.v2 import V2Manager
from runtime.errors import PyruncError

ALL = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma")

FILES = {
    "memory": {"memory.max": "max", "memory.low": "0", "memory.high": "max",
               "memory.swap.max": "max", "memory.current": "4096000", "memory.peak": "8192000",
               "memory.swap.current": "1000", "memory.swap.events": "high 0\nmax 2\nfail 0\n",
               "memory.stat": "anon 3000000\nfile 1000000\nkernel 96000\n",
               "memory.events": "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n"},
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0",
            "cpu.idle": "0",
            "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 40\n"
                        "nr_throttled 12\nthrottled_usec 7000\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1",
               "cpuset.mems.effective": "0"},
    "pids": {"pids.max": "max", "pids.current": "3"},
    "io": {"io.weight": "default 100", "io.max": "",
           "io.stat": "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max",
                "hugetlb.2MB.current": "2097152", "hugetlb.2MB.events": "max 3\n"},
    "rdma": {"rdma.max": ""},
}


def fake_cgroup(path: str, controllers=ALL, offer=ALL) -> str:
    """A directory shaped like a v2 cgroup with `controllers` enabled for it (their files
    present) and `offer` listed in its cgroup.controllers."""
    os.makedirs(path, exist_ok=True)
    core = {"cgroup.controllers": " ".join(offer), "cgroup.subtree_control": "",
            "cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n",
            "cgroup.freeze": "0", "cgroup.kill": "", "cgroup.max.depth": "max"}
    for name, value in core.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(value)
    for c in controllers:
        for name, value in FILES[c].items():
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
    return path


def rd(path: str, name: str) -> str:
    with open(os.path.join(path, name)) as f:
        return f.read().strip()


@pytest.fixture
def tree(tmp_path):
    """root (the fake mount) -> pod -> ctr, each a fake v2 cgroup."""
    root = fake_cgroup(str(tmp_path / "root"))
    pod = fake_cgroup(os.path.join(root, "pod"))
    ctr = fake_cgroup(os.path.join(pod, "ctr"))
    return root, pod, ctr


def test_new_manager_chooses_by_what_is_mounted(tmp_path):
    # fake v2 root: cgroup.controllers at the top means a unified host
    root = fake_cgroup(str(tmp_path / "root"))
    with open("/proc/self/cgroup") as f:
        own = [ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")][0]
    m = new_manager("", "cid1", root)
    assert isinstance(m, V2Manager)
    assert m.path == os.path.normpath(os.path.join(root, own.lstrip("/"), "cid1"))
    assert new_manager("/abs/x", "cid1", root).path == os.path.join(root, "abs/x")
    assert new_manager("rel/y", "cid1", root).path == \
        os.path.normpath(os.path.join(root, own.lstrip("/"), "rel/y"))
    st = m.to_state()
    again = load_manager({"cgroup": st})
    assert isinstance(again, V2Manager) and again.path == m.path and again.root == root
    for bad in ("system.slice:pyrunc:x", "../escape", "a/../../b"):
        with pytest.raises(PyruncError):
            new_manager(bad, "cid1", root)
    # an absolute path is cleaned at its root, as Go's filepath.Clean does: no escape
    assert new_manager("/a/../../b", "cid1", root).path == os.path.join(root, "b")
    # and the real host, whose /sys/fs/cgroup is a tmpfs of v1 hierarchies, gets v1
    assert isinstance(new_manager("", "cid1"), V1Manager)


def test_create_enables_controllers_down_the_path(tmp_path):
    root = fake_cgroup(str(tmp_path / "root"), controllers=(), offer=("cpu", "memory", "pids"))
    fake_cgroup(os.path.join(root, "a"), controllers=(), offer=("memory", "pids"))
    m = V2Manager(os.path.join(root, "a", "b", "ctr"), root)
    m.create()
    assert os.path.isdir(m.path)
    assert rd(root, "cgroup.subtree_control") == "+cpu +memory +pids"
    assert rd(os.path.join(root, "a"), "cgroup.subtree_control") == "+memory +pids"


def test_resources_map_to_v2_files(tree):
    root, _pod, ctr = tree
    m = V2Manager(ctr, root)
    m.set({
        "memory": {"limit": 64 << 20, "reservation": 16 << 20, "swap": 96 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 200000, "burst": 1000, "idle": 1,
                "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 20},
        "blockIO": {"weight": 500,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 300}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "50M", "cgroup.max.depth": "3"},
    })
    expect = {
        "memory.max": str(64 << 20), "memory.low": str(16 << 20),
        "memory.swap.max": str(32 << 20),  # v2 swap excludes memory: 96 - 64
        "cpu.weight": "39", "cpu.max": "50000 200000", "cpu.max.burst": "1000",
        "cpu.idle": "1", "cpuset.cpus": "0-1", "cpuset.mems": "0", "pids.max": "20",
        "hugetlb.2MB.max": str(4 << 20), "hugetlb.2MB.rsvd.max": str(4 << 20),
        "rdma.max": "mlx5_1 hca_handle=3 hca_object=10000", "memory.high": "50M",
        "cgroup.max.depth": "3",
        # a fake file keeps only the last write: the write order ends with the iops line
        "io.max": "8:0 wiops=300",
        "io.weight": f"8:0 {r2.blkio_to_io_weight(100)}",
    }
    for name, value in expect.items():
        assert rd(ctr, name) == value, name


def test_unlimited_values_and_zeros(tree):
    root, _pod, ctr = tree
    m = V2Manager(ctr, root)
    m.set({"memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": 5},
           "cpu": {"quota": 20000}})
    m.set({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert rd(ctr, "memory.max") == "max" and rd(ctr, "memory.swap.max") == "max"
    assert rd(ctr, "pids.max") == "max" and rd(ctr, "cpu.max") == "max 100000"
    # zeros (dockerd's update body) leave everything as it is
    m.set({"memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0},
           "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
           "blockIO": {"weight": 0}, "pids": {"limit": 0}})
    assert rd(ctr, "memory.max") == "max" and rd(ctr, "pids.max") == "max"
    # period alone keeps the quota already there (runc would reset it to max)
    m.set({"cpu": {"quota": 30000}})
    m.set({"cpu": {"period": 50000}})
    assert rd(ctr, "cpu.max") == "30000 50000"


def test_conversions():
    assert r2.shares_to_weight(2) == 1
    assert r2.shares_to_weight(1024) == 39
    assert r2.shares_to_weight(262144) == 10000
    assert r2.blkio_to_io_weight(10) == 1
    assert r2.blkio_to_io_weight(1000) == 10000
    assert r2.blkio_to_io_weight(500) == 4950
    assert r2.swap_to_v2(-1, 100) == -1
    assert r2.swap_to_v2(300, 100) == 200
    for swap, limit in ((50, 100), (100, 0), (100, -1)):
        with pytest.raises(PyruncError, match="memory.swap"):
            r2.swap_to_v2(swap, limit)


@pytest.mark.parametrize("res, words", [
    ({"memory": {"swappiness": 30}}, ["swappiness", "memory"]),
    ({"memory": {"disableOOMKiller": True}}, ["disableOOMKiller", "memory"]),
    ({"memory": {"kernelTCP": 1 << 20}}, ["kernelTCP", "memory"]),
    ({"cpu": {"realtimeRuntime": 1000}}, ["realtime", "cpu"]),
    ({"network": {"classID": 5}}, ["network", "net_cls"]),
    ({"blockIO": {"leafWeight": 100}}, ["leafWeight", "io"]),
    # a fake directory isn't a cgroup: the kernel refuses to attach the device program
    # (the real attach is tested on the real cgroup2 mount in test_cgroups.py)
    ({"devices": [{"allow": False, "access": "rwm"}]}, ["devices", "eBPF"]),
    ({"devices": [{"allow": False, "type": "x"}]}, ["devices", "bad type"]),
    ({"unified": {"../x": "1"}}, ["bad key"]),
    ({"unified": {"cgroup.procs": "1"}}, ["not a resource setting"]),
    ({"memory": {"limit": True}}, ["memory.limit", "integer"]),
])
def test_what_v2_cannot_do_is_an_error(tree, res, words):
    root, _pod, ctr = tree
    with pytest.raises(PyruncError) as e:
        V2Manager(ctr, root).set(res)
    for w in words:
        assert w in str(e.value)


def test_a_controller_not_enabled_is_named(tmp_path):
    root = fake_cgroup(str(tmp_path / "root"), controllers=(), offer=("memory",))
    ctr = fake_cgroup(os.path.join(root, "ctr"), controllers=("memory",), offer=())
    m = V2Manager(ctr, root)
    with pytest.raises(PyruncError, match=r"pids cgroup v2 controller is not available"):
        m.set({"pids": {"limit": 10}})
    with pytest.raises(PyruncError, match=r"cpu cgroup v2 controller is not available"):
        m.set({"cpu": {"shares": 512}})
    # unified: a missing controller file first gets its controller enabled in the parents
    # (a fake doesn't grow the file, so it still fails, naming the controller)
    with pytest.raises(PyruncError, match=r"the io cgroup v2 controller"):
        m.set({"unified": {"io.weight": "default 50"}})
    with pytest.raises(PyruncError, match=r"hugepageLimits\[2MB\]"):
        m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    assert rd(root, "cgroup.subtree_control") == ""  # io/hugetlb aren't offered by root


def test_kernel_memory_is_accepted_with_a_warning(tree):
    root, _pod, ctr = tree
    warnings = []
    V2Manager(ctr, root).set({"memory": {"kernel": 1 << 20, "limit": 1 << 30}}, warnings.append)
    assert len(warnings) == 1 and "ignored" in warnings[0]
    assert rd(ctr, "memory.max") == str(1 << 30)


def test_stats_in_runcs_shape(tree):
    _root, _pod, ctr = tree
    with open(os.path.join(ctr, "memory.max"), "w") as f:
        f.write(str(64 << 20))
    with open(os.path.join(ctr, "pids.max"), "w") as f:
        f.write("20")
    d = v2_stats(ctr)
    assert set(d) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                      "network_interfaces"}
    assert d["cpu"] == {"usage": {"total": 2_500_000, "kernel": 500_000, "user": 2_000_000},
                        "throttling": {"periods": 40, "throttledPeriods": 12,
                                       "throttledTime": 7_000_000}}
    assert d["memory"]["usage"] == {"limit": 64 << 20, "usage": 4096000, "max": 8192000,
                                    "failcnt": 7}
    # swap as memory+swap, v1 style; an unlimited swap.max stays unlimited
    assert d["memory"]["swap"] == {"limit": UINT64_MAX, "usage": 4097000, "failcnt": 2}
    assert d["memory"]["cache"] == 1000000
    assert d["memory"]["raw"] == {"anon": 3000000, "file": 1000000, "kernel": 96000}
    assert d["pids"] == {"current": 3, "limit": 20}
    assert d["cpuset"]["cpus"] == [0, 1] and d["cpuset"]["mems"] == [0]
    assert d["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 254, "op": "Read", "value": 4096},
                                    {"major": 254, "op": "Write", "value": 8192}],
        "ioServicedRecursive": [{"major": 254, "op": "Read", "value": 1},
                                {"major": 254, "op": "Write", "value": 2}]}
    if "2MB" in page_sizes():
        assert d["hugetlb"]["2MB"] == {"usage": 2097152, "failcnt": 3}
    assert d["network_interfaces"] is None and d["intel_rdt"] == {}


def test_stats_of_a_vanished_cgroup_are_zeros(tmp_path):
    d = v2_stats(str(tmp_path / "gone"))
    assert d["pids"] == {} and d["blkio"] == {} and d["hugetlb"] == {}
    assert d["memory"]["usage"] == {"limit": 0, "failcnt": 0}


def test_oom_watcher_counts_oom_kills(tree):
    _root, _pod, ctr = tree
    w = V2OomWatcher(ctr)
    try:
        # a regular file is always "ready" to poll: the watcher must not report or spin
        assert w.wait(0.1) == (0, False)
        with open(os.path.join(ctr, "memory.events"), "w") as f:
            f.write("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\noom_group_kill 0\n")
        assert w.wait(0.1) == (2, False)  # it was 1 when the watcher started
        assert w.wait(0.1) == (0, False)
        os.unlink(os.path.join(ctr, "memory.events"))
        assert w.wait(0.1)[1] is True  # the cgroup went away
    finally:
        w.close()


def test_freeze_waits_and_gives_up_cleanly(tree):
    """The fake's cgroup.events never says "frozen 1", so freeze must time out, thaw again
    and fail; and the flag write itself is what the kernel would see."""
    root, _pod, ctr = tree
    m = V2Manager(ctr, root)
    with pytest.raises(PyruncError, match="not frozen"):
        m.freeze(True, timeout=0.2)
    assert rd(ctr, "cgroup.freeze") == "0"
    with open(os.path.join(ctr, "cgroup.events"), "w") as f:
        f.write("populated 1\nfrozen 1\n")
    m.freeze(True, timeout=0.2)
    assert m.frozen() and rd(ctr, "cgroup.freeze") == "1"


def test_destroy_removes_sub_cgroups_first(tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, "ctr", "a", "b"))
    os.makedirs(os.path.join(root, "ctr", "c"))
    V2Manager(os.path.join(root, "ctr"), root).destroy()
    assert os.listdir(root) == []
