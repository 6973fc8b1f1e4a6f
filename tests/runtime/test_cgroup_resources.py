"""linux.resources written at create, for real, on what this host offers: every setting whose
file the host has lands in it; the rest (blkio weights without BFQ/CFQ, swap accounting, RT
group scheduling... as tests/hostcaps.py probes them) is refused with one line naming the
field; hugetlb on the hybrid cgroup2 mount; device rules; settings for controllers the host
does not mount."""

from __future__ import annotations

import json
import os

import pytest

from tests import hostcaps
from tests.cgroupfs import UNIFIED, _cgroups_of, _read, _start, _stats
from tests.rig import cgroup_leftovers

# Settings whose cgroup file only some kernels or disk schedulers have:
# (section, key, value, controller, file, what the file then reads). The probe decides
# whether each is checked for its effect (written at create) or for its refusal.
_OPTIONAL = [
    ("memory", "swap", 96 << 20, "memory", "memory.memsw.limit_in_bytes", str(96 << 20)),
    ("memory", "kernelTCP", 16 << 20, "memory", "memory.kmem.tcp.limit_in_bytes",
     str(16 << 20)),
    ("memory", "swappiness", 10, "memory", "memory.swappiness", "10"),
    ("cpu", "realtimePeriod", 1000000, "cpu", "cpu.rt_period_us", "1000000"),
    ("cpu", "realtimeRuntime", 1000, "cpu", "cpu.rt_runtime_us", "1000"),
    ("cpu", "idle", 0, "cpu", "cpu.idle", "0"),
    ("cpu", "burst", 1000, "cpu", "cpu.cfs_burst_us", "1000"),
    ("blockIO", "weight", 300, "blkio", hostcaps.blkio_weight_file() or "blkio.weight", "300"),
]


def _offered(controller: str, name: str) -> bool:
    return hostcaps.v1_has(controller, name)


def test_resources_written_at_create(pyrunc, bundle):
    """Every setting the host offers lands in its file at create (the others are refused:
    test_setting_the_host_lacks_is_refused)."""
    # the block device of the root filesystem; throttle entries need a whole disk
    disk = hostcaps.root_disk()
    hostcaps.need(disk is not None, "a whole disk under / (blkio throttles need one)")
    assert disk is not None
    major, minor = disk
    res: dict = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "disableOOMKiller": False},
        "cpu": {"shares": 256, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 33},
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor,
                                               "rate": 10 << 20}],
                    "throttleWriteIOPSDevice": [{"major": major, "minor": minor,
                                                 "rate": 500}]},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    optional = [o for o in _OPTIONAL if _offered(o[3], o[4])]
    for section, key, value, *_ in optional:
        res[section][key] = value
    unified = hostcaps.cgroup2_mount() == hostcaps.UNIFIED  # the hybrid layout's cgroup2
    if unified:
        res["unified"] = {"cgroup.max.descendants": "7"}
    cid, pid = _start(pyrunc, bundle, ["sleep", "60"], res)
    try:
        cg = _cgroups_of(pid)
        m, c, b = cg["memory"], cg["cpu"], cg["blkio"]
        want = {
            (m, "memory.limit_in_bytes"): str(64 << 20),
            (m, "memory.soft_limit_in_bytes"): str(32 << 20),
            (c, "cpu.shares"): "256", (c, "cpu.cfs_quota_us"): "50000",
            (c, "cpu.cfs_period_us"): "200000",
            (cg["cpuset"], "cpuset.cpus"): "0", (cg["cpuset"], "cpuset.mems"): "0",
            (cg["pids"], "pids.max"): "33",
            (b, "blkio.throttle.read_bps_device"): f"{major}:{minor} {10 << 20}",
            (b, "blkio.throttle.write_iops_device"): f"{major}:{minor} 500",
        }
        for _section, _key, _value, ctrl, name, seen in optional:
            want[(cg[ctrl], name)] = seen
        if unified:
            want[(cg["unified"], "cgroup.max.descendants")] = "7"
        for (d, name), value in want.items():
            assert _read(os.path.join(d, name)) == value, name
        # per-device weights need BFQ (or CFQ) as the disk's scheduler: applied, or refused
        # with an error naming blkio
        body = {"blockIO": {"weightDevice": [{"major": major, "minor": minor, "weight": 200}]}}
        p = pyrunc("update", "-r", "-", cid, input=json.dumps(body).encode())
        if hostcaps.disk_scheduler(major, minor) == "bfq":
            assert p.returncode == 0, p.stderr
            assert f"{major}:{minor} 200" in _read(os.path.join(b, "blkio.bfq.weight_device"))
        else:
            assert p.returncode == 1 and b"blkio" in p.stderr and b"scheduler" in p.stderr
        oom = dict(x.split() for x in _read(os.path.join(m, "memory.oom_control")).splitlines())
        assert oom["oom_kill_disable"] == "0"
        rules = _read(os.path.join(cg["devices"], "devices.list")).splitlines()
        assert "c 1:3 rwm" in rules and "a *:* rwm" not in rules
    finally:
        pyrunc("delete", "--force", cid)


@pytest.mark.parametrize("section,key,value,ctrl,name,seen", _OPTIONAL,
                         ids=[f"{o[0]}.{o[1]}" for o in _OPTIONAL])
def test_setting_the_host_lacks_is_refused(pyrunc, bundle, section, key, value, ctrl, name,
                                           seen):
    """Where the host has no file for a setting (no BFQ/CFQ for blkio weights, no swap
    accounting, no RT group scheduling...), create refuses it with one line naming the field
    and leaves nothing behind; where it has one, the setting takes effect."""
    if _offered(ctrl, name):
        with_limit = {"limit": 64 << 20} if key == "swap" else {}  # swap needs a limit
        cid, pid = _start(pyrunc, bundle, ["sleep", "60"], {section: {key: value, **with_limit}})
        try:
            assert _read(os.path.join(_cgroups_of(pid)[ctrl], name)) == seen
        finally:
            pyrunc("delete", "--force", cid)
        return
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["resources"] = {section: {key: value,
                                                     **({"limit": 64 << 20} if key == "swap"
                                                        else {})}}
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    err = p.stderr.decode().strip()
    assert p.returncode == 1, (p.returncode, err)
    assert f"{section}.{key}" in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert pyrunc("state", cid).returncode != 0
    assert not cgroup_leftovers(cid)


def test_hugetlb_on_the_cgroup2_mount(pyrunc, bundle):
    """hugetlb is bound to the cgroup2 mount on this host: the limit lands there (the parent
    gets +hugetlb in its subtree_control, as runc does on v2 hosts)."""
    hostcaps.need(hostcaps.cgroup2_mount() == UNIFIED
                  and "hugetlb" in hostcaps.cgroup2_controllers(),
                  "hugetlb on a hybrid cgroup2 mount at " + UNIFIED)
    hostcaps.need(bool(hostcaps.hugetlb_sizes()), "huge pages (/sys/kernel/mm/hugepages)")
    size = hostcaps.hugetlb_sizes()[0]  # the smallest, e.g. 2MB
    cid, pid = _start(pyrunc, bundle, ["sleep", "60"],
                      {"hugepageLimits": [{"pageSize": size, "limit": 4 << 20}]})
    try:
        u = _cgroups_of(pid)["unified"]
        assert _read(os.path.join(u, f"hugetlb.{size}.max")) == str(4 << 20)
        assert _read(os.path.join(u, f"hugetlb.{size}.rsvd.max")) == str(4 << 20)
        assert size in _stats(pyrunc, cid)["hugetlb"]
    finally:
        pyrunc("delete", "--force", cid)


def test_device_rules(pyrunc, make_bundle):
    """linux.devices makes /dev/loop0 (b 7:0) in the container; the devices cgroup decides
    whether it may be opened. Opening an unbound loop device succeeds and reads nothing."""
    node = [{"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0, "fileMode": 0o600}]
    outs = []
    for allow in (False, True):
        b = make_bundle(["sh", "-c", "head -c 1 /dev/loop0 && echo opened"])
        b.config["linux"]["devices"] = node
        rules = [{"allow": False, "access": "rwm"}]
        if allow:
            rules.append({"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"})
        b.config["linux"]["resources"] = {"devices": rules}
        b.write()
        p = pyrunc("run", "--bundle", b.path, pyrunc.new_id("dev"))
        outs.append((p.returncode, p.stdout + p.stderr))
    assert outs[0][0] != 0 and b"Operation not permitted" in outs[0][1], outs[0]
    assert outs[1][0] == 0 and b"opened" in outs[1][1], outs[1]


def test_setting_the_host_cannot_apply_fails_create_cleanly(pyrunc, bundle):
    bundle.config["linux"]["resources"] = {"network": {"classID": 1048577,
                                                       "priorities": [{"name": "lo",
                                                                       "priority": 1}]}}
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = pyrunc.new_id("bad")
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0
    assert b"net_cls" in p.stderr and b"not mounted" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
    assert not cgroup_leftovers(cid)
