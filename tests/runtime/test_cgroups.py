"""cgroups on this host, for real: limits applied by create and by update, OOM kills seen by
`events`, pids.max stopping a fork bomb, CPU throttling, pause/resume, ps, kill --all,
delete --force, cgroupsPath, and the real cgroup.freeze/cgroup.kill of the cgroup2 mount.

The host is hybrid: v1 controllers (cpu, cpuacct, cpuset, memory, devices, freezer, blkio,
pids) plus a cgroup2 mount at /sys/fs/cgroup/unified holding only hugetlb. Every hog here is
small and limited (memory 32 MiB, pids.max 20, a depth-bounded fork tree) and every test
kills its container at the end (the `pyrunc` fixture force-deletes and checks for leftover
cgroups even when a test fails).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.cgroupfs import (
    BUSY,
    UNIFIED,
    V1,
    _alive,
    _cgroups_of,
    _read,
    _start,
    _stats,
    _stopped,
    _wait,
)
from tests.rig import PYRUNC, RUNC, Bundle, Runtime


def test_memory_hog_is_oom_killed_and_events_reports_it(pyrunc, bundle, tmp_path):
    # dd's 64 MiB buffer can't fit under 32 MiB of memory+swap: the kernel OOM-kills dd,
    # the shell reports it and stays up until `go` (so events sees the OOM before the end).
    cid = pyrunc.new_id("oom")
    bundle.config["process"]["args"] = [
        "sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.02; done; "
                    "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; sleep 30"]
    bundle.config["root"]["readonly"] = False
    bundle.config["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}}
    bundle.write()
    out = tmp_path / "out"
    with open(out, "wb") as o:  # the container's stdio: this file, so we can read dd's fate
        r = subprocess.run([PYRUNC, "--root", pyrunc.root, "create", "--bundle", bundle.path,
                            cid], stdout=o, stderr=o, timeout=60)
    assert r.returncode == 0, out.read_bytes()
    evfile = open(tmp_path / "events", "w+b")
    ev = subprocess.Popen([PYRUNC, "--root", pyrunc.root, "events", "--interval", "1s", cid],
                          stdout=evfile, stderr=subprocess.STDOUT)
    try:
        pyrunc("start", cid, check=True)
        time.sleep(0.3)  # events has registered its eventfd by now
        open(os.path.join(bundle.rootfs, "tmp/go"), "w").close()
        lines = _wait(lambda: [json.loads(x) for x in
                               open(tmp_path / "events", "rb").read().splitlines()
                               if b'"oom"' in x], 15, "an oom event")
        assert lines[0] == {"type": "oom", "id": cid}
        _wait(lambda: b"dd=137" in out.read_bytes(), 10, "dd killed by SIGKILL")
        data = _stats(pyrunc, cid)
        assert data["memory"]["usage"]["limit"] == 32 << 20
        # dd filled the cgroup up to its limit before the kill (failcnt stays 0 on this kernel)
        assert 16 << 20 < data["memory"]["usage"]["max"] <= 32 << 20, data["memory"]
        cg = _cgroups_of(pyrunc.state(cid)["pid"])["memory"]
        oom = dict(line.split() for line in _read(os.path.join(cg, "memory.oom_control"))
                   .splitlines())
        assert int(oom["oom_kill"]) >= 1
        # the stats lines that came with it are runc's shape
        stats = [json.loads(x) for x in open(tmp_path / "events", "rb").read().splitlines()
                 if b'"stats"' in x]
        assert all(s["id"] == cid and "memory" in s["data"] for s in stats)
        pyrunc("kill", cid, "KILL", check=True)
        assert ev.wait(timeout=10) == 0  # events ends when the container stops
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
        evfile.close()
        pyrunc("delete", "--force", cid)


def test_fork_bomb_stops_at_pids_max(pyrunc, bundle):
    # A binary fork tree of depth 7 (at most ~510 processes even without any limit, so the
    # host is safe if the limit failed); pids.max = 20 must stop it at 20. A busybox shell
    # whose fork fails exits, so the count settles below 20 once the refused branches die.
    # The init itself forks once, first, and never again (a refused fork would end it).
    bomb = ("f() { if [ $1 -gt 0 ]; then f $(($1-1)) & f $(($1-1)) & fi; sleep 60; }; "
            "f 7 2>/dev/null & wait; exec sleep 60")
    cid, pid = _start(pyrunc, bundle, ["sh", "-c", bomb], {"pids": {"limit": 20}})
    try:
        cg = _cgroups_of(pid)["pids"]

        def refused() -> int:
            ev = dict(x.split() for x in _read(os.path.join(cg, "pids.events")).splitlines())
            return int(ev["max"])
        _wait(lambda: refused() > 0, 15, "a fork refused at pids.max")
        counts = []
        for _ in range(10):  # let it settle; it never goes above the limit
            counts.append(int(_read(os.path.join(cg, "pids.current"))))
            time.sleep(0.1)
        assert max(counts) <= 20 and counts[-1] > 1, counts
        if os.path.exists(os.path.join(cg, "pids.peak")):
            assert _read(os.path.join(cg, "pids.peak")) == "20"
        pids = json.loads(pyrunc("ps", "--format", "json", cid, check=True).stdout)
        assert 1 < len(pids) <= 20 and pid in pids
        st = _stats(pyrunc, cid)["pids"]
        assert st["limit"] == 20 and st["current"] == len(pids)
        pyrunc("kill", "--all", cid, "KILL", check=True)
        _wait(lambda: not any(_alive(p) for p in pids), 10, "every bomb process dead")
        _wait(lambda: _stopped(pyrunc, cid), 10, "stopped")
    finally:
        pyrunc("delete", "--force", cid)


def test_cpu_quota_throttles(pyrunc, bundle):
    cid, pid = _start(pyrunc, bundle, BUSY, {"cpu": {"quota": 10000, "period": 100000}})
    try:
        cg = _cgroups_of(pid)["cpu"]
        assert _read(os.path.join(cg, "cpu.cfs_quota_us")) == "10000"
        time.sleep(0.5)
        a = _stats(pyrunc, cid)["cpu"]
        t0 = time.monotonic()
        time.sleep(1.0)
        b = _stats(pyrunc, cid)["cpu"]
        dt = time.monotonic() - t0
        assert b["throttling"]["throttledPeriods"] > a["throttling"].get("throttledPeriods", 0)
        assert b["throttling"]["periods"] > a["throttling"]["periods"]
        assert b["throttling"]["throttledTime"] > 0
        used = (b["usage"]["total"] - a["usage"]["total"]) / 1e9
        assert 0 < used < 0.1 * dt * 1.6, (used, dt)  # ~10% of one CPU, with slack
        # update changes the live quota: now 80% of a CPU
        pyrunc("update", "--cpu-quota", "80000", cid, check=True)
        assert _read(os.path.join(cg, "cpu.cfs_quota_us")) == "80000"
        c = _stats(pyrunc, cid)["cpu"]
        t1 = time.monotonic()
        time.sleep(1.0)
        d = _stats(pyrunc, cid)["cpu"]
        used2 = (d["usage"]["total"] - c["usage"]["total"]) / 1e9
        assert used2 > 2 * used and used2 > 0.25 * (time.monotonic() - t1), (used, used2)
    finally:
        pyrunc("delete", "--force", cid)


def test_pause_stops_progress_and_resume_restores_it(pyrunc, bundle):
    cid, pid = _start(pyrunc, bundle, ["sh", "-c", "sleep 60 & while :; do :; done"])
    try:
        pyrunc("pause", cid, check=True)
        assert pyrunc.state(cid)["status"] == "paused"
        assert _read(os.path.join(_cgroups_of(pid)["freezer"], "freezer.state")) == "FROZEN"
        u1 = _stats(pyrunc, cid)["cpu"]["usage"]["total"]
        time.sleep(0.5)
        u2 = _stats(pyrunc, cid)["cpu"]["usage"]["total"]
        assert u1 == u2, "a frozen container used CPU"
        p = pyrunc("pause", cid)
        assert p.returncode != 0  # already paused
        pyrunc("resume", cid, check=True)
        assert pyrunc.state(cid)["status"] == "running"
        # progress again: bounded by time, not by a share of a loaded machine's cpu
        _wait(lambda: _stats(pyrunc, cid)["cpu"]["usage"]["total"] - u2 > 0.05e9, 20,
              "cpu progress after resume")
        # kill --all of a paused container keeps it paused for a catchable signal ...
        pyrunc("pause", cid, check=True)
        pyrunc("kill", "--all", cid, "CONT", check=True)
        assert pyrunc.state(cid)["status"] == "paused"
        # ... and delete --force kills every process, frozen or not
        pids = json.loads(pyrunc("ps", "--format", "json", cid, check=True).stdout)
        assert len(pids) == 2
        pyrunc("delete", "--force", cid, check=True)
        assert not any(_alive(p) for p in pids)
    finally:
        pyrunc("delete", "--force", cid)


def test_update_changes_a_live_memory_limit(pyrunc, bundle):
    # Each time the host creates /tmp/go, the container tries a 48 MiB dd and records ok/fail.
    script = ("while :; do if [ -e /tmp/go ]; then rm /tmp/go; "
              "if dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null; then echo ok >>/tmp/r;"
              " else echo fail >>/tmp/r; fi; fi; sleep 0.02; done")
    cid, pid = _start(pyrunc, bundle, ["sh", "-c", script],
                      {"memory": {"limit": 32 << 20, "swap": 32 << 20}}, writable=True)
    res = os.path.join(bundle.rootfs, "tmp/r")

    def attempt(n):
        open(os.path.join(bundle.rootfs, "tmp/go"), "w").close()
        return _wait(lambda: os.path.exists(res) and len(_read(res).split()) == n and
                     _read(res).split()[-1], 15, f"attempt {n}")
    try:
        mem = _cgroups_of(pid)["memory"]
        assert attempt(1) == "fail"
        pyrunc("update", "--memory", "128m", "--memory-swap", "128M", cid, check=True)
        assert _read(os.path.join(mem, "memory.limit_in_bytes")) == str(128 << 20)
        assert _read(os.path.join(mem, "memory.memsw.limit_in_bytes")) == str(128 << 20)
        assert attempt(2) == "ok"
        # dockerd's shape on stdin: zeros mean "unchanged"; lowering memory below the current
        # memsw limit needs memory first, then memsw (and the other way when raising)
        body = {"memory": {"limit": 40 << 20, "reservation": 0, "swap": 40 << 20,
                           "kernel": 0}, "cpu": {"shares": 512, "quota": 0, "period": 0,
                                                 "realtimeRuntime": 0, "realtimePeriod": 0,
                                                 "cpus": "", "mems": ""},
                "blockIO": {"weight": 0}, "pids": {"limit": 50}}
        pyrunc("update", "--resources", "-", cid, input=json.dumps(body).encode(), check=True)
        assert _read(os.path.join(mem, "memory.limit_in_bytes")) == str(40 << 20)
        assert _read(os.path.join(mem, "memory.memsw.limit_in_bytes")) == str(40 << 20)
        cgs = _cgroups_of(pid)
        assert _read(os.path.join(cgs["pids"], "pids.max")) == "50"
        assert _read(os.path.join(cgs["cpu"], "cpu.shares")) == "512"
        assert attempt(3) == "fail"
        # a file works too, and a stopped container can't be updated
        f = os.path.join(bundle.path, "res.json")
        with open(f, "w") as fh:
            json.dump({"pids": {"limit": -1}}, fh)
        pyrunc("update", "-r", f, cid, check=True)
        assert _read(os.path.join(cgs["pids"], "pids.max")) == "max"
        pyrunc("kill", cid, "KILL", check=True)
        _wait(lambda: _stopped(pyrunc, cid), 10, "stopped")
        p = pyrunc("update", "--memory", "64m", cid)
        assert p.returncode != 0 and b"not running" in p.stderr
    finally:
        pyrunc("delete", "--force", cid)


def test_update_errors_name_the_controller(pyrunc, bundle):
    cid, pid = _start(pyrunc, bundle, ["sleep", "60"])
    try:
        for body, words in (
                ({"network": {"classID": 1048577}}, [b"net_cls", b"not mounted"]),
                ({"unified": {"memory.max": "100M"}}, [b"memory", b"memory.max"]),
                ({"memory": {"swappiness": 150}}, [b"swappiness", b"0-100"]),
                ({"cpu": {"shares": 1 << 20}}, [b"cpu.shares", b"maximum"]),
                ({"memory": {"limit": "lots"}}, [b"memory.limit", b"integer"]),
                ({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]},
                 [b"hugetlb", b"3MB"])):
            p = pyrunc("update", "-r", "-", cid, input=json.dumps(body).encode())
            assert p.returncode == 1, body
            for w in words:
                assert w in p.stderr, (body, p.stderr)
        p = pyrunc("update", "--memory", "12zb", cid)
        assert p.returncode != 0 and b"--memory" in p.stderr
        p = pyrunc("update", "--kernel-memory", "10m", cid)
        assert p.returncode == 0 and b"ignored" in p.stderr  # runc warns and goes on
        p = pyrunc("update", "-r", "-", cid, input=b"[1, 2]")
        assert p.returncode != 0 and b"object" in p.stderr
    finally:
        pyrunc("delete", "--force", cid)


def test_cgroups_path_absolute_relative_and_default(pyrunc, bundle):
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ["unified"]:
                own[c] = path
    tag = f"pyrunc-test-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for kind in ("absolute", "relative", "default"):
            cid = pyrunc.new_id("cp")
            sub = {"absolute": f"/{tag}/{cid}", "relative": f"{tag}/{cid}",
                   "default": ""}[kind]
            cid_, pid = _start(pyrunc, bundle, ["sleep", "60"], None, cid=cid, cgroupsPath=sub)
            cgs = _cgroups_of(pid)
            if kind != "default":
                made += [os.path.dirname(d) for d in cgs.values()]
            for ctrl in ("memory", "pids", "freezer", "cpu", "unified"):
                if kind == "absolute":
                    want = f"/{tag}/{cid_}"
                elif kind == "relative":
                    want = os.path.join(own[ctrl], tag, cid_)
                else:
                    want = os.path.join(own[ctrl], cid_)
                mount = UNIFIED if ctrl == "unified" else os.path.join(V1, ctrl)
                assert cgs[ctrl] == os.path.join(mount, want.lstrip("/")), (kind, ctrl)
            pyrunc("delete", "--force", cid_, check=True)
            for d in cgs.values():
                assert not os.path.exists(d), d
    finally:
        for d in sorted(set(made), key=len, reverse=True):  # the parents we named
            if os.path.basename(d) == tag:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
        assert not [d for d in made if os.path.exists(d)]


def test_ps_table_and_json(pyrunc, bundle):
    cid, pid = _start(pyrunc, bundle, ["sh", "-c", "sleep 61 & sleep 62 & wait"])
    try:
        pids = _wait(lambda: (lambda v: v if len(v) == 3 else None)(
            json.loads(pyrunc("ps", "--format", "json", cid, check=True).stdout)), 10, "3 pids")
        assert pid in pids
        table = pyrunc("ps", cid, check=True).stdout.decode().splitlines()
        assert table[0].split()[:2] == ["UID", "PID"]
        assert sorted(int(line.split()[1]) for line in table[1:]) == sorted(pids)
        assert any("sleep 61" in line for line in table)
        custom = pyrunc("ps", cid, "-o", "pid,args", check=True).stdout.decode().splitlines()
        assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 4
        p = pyrunc("ps", cid, "-o", "args")
        assert p.returncode != 0 and b"PID" in p.stderr
    finally:
        pyrunc("delete", "--force", cid)


def test_kill_all_reaches_every_process(pyrunc, bundle):
    # The init is pid 1 of its namespace without a TERM handler, so SIGTERM from the host
    # passes it by; its children die of it.
    cid, pid = _start(pyrunc, bundle, ["sh", "-c",
                                       "sleep 60 & sleep 60 & sleep 60 & wait; exec sleep 60"])
    try:
        pids = _wait(lambda: (lambda v: v if len(v) == 4 else None)(
            json.loads(pyrunc("ps", "--format", "json", cid, check=True).stdout)), 10, "4 pids")
        pyrunc("kill", "--all", cid, "TERM", check=True)
        _wait(lambda: [p for p in pids if _alive(p)] == [pid], 10, "sleeps gone")
        assert pyrunc.state(cid)["status"] == "running"
        pyrunc("delete", "--force", cid, check=True)
        assert not _alive(pid)
    finally:
        pyrunc("delete", "--force", cid)


def test_events_requires_a_live_container(pyrunc, bundle):
    cid, pid = _start(pyrunc, bundle, ["true"])
    _wait(lambda: _stopped(pyrunc, cid), 10, "stopped")
    p = pyrunc("events", "--stats", cid)
    assert p.returncode != 0 and b"not running" in p.stderr
    p = pyrunc("events", "nosuch")
    assert p.returncode != 0 and b"does not exist" in p.stderr
    pyrunc("delete", cid, check=True)


@pytest.mark.peer
@pytest.mark.skipif(RUNC is None, reason="runc not installed")
def test_stats_shape_matches_runc(pyrunc, bundle, tmp_path):
    """The same container under runc and under pyrunc: `events --stats` has the same keys."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20},
                                           "pids": {"limit": 40},
                                           "cpu": {"quota": 50000, "period": 100000}}
    bundle.write()
    runc = Runtime(RUNC, tempfile.mkdtemp(prefix="runc-test-root-"))
    rid = runc.new_id("rc")
    try:
        runc("run", "-d", "--bundle", bundle.path, rid, check=True, stdin=subprocess.DEVNULL)
        theirs = json.loads(runc("events", "--stats", rid, check=True).stdout)
        pid_ = _start(pyrunc, Bundle(bundle.path, bundle.config), ["sleep", "60"])[0]
        ours = json.loads(pyrunc("events", "--stats", pid_, check=True).stdout)
        assert set(ours) == set(theirs) == {"type", "id", "data"}
        d1, d2 = ours["data"], theirs["data"]
        assert set(d1) == set(d2)
        for key in ("cpu", "memory", "pids", "cpuset"):
            assert set(d1[key]) == set(d2[key]), key
        assert set(d1["memory"]["usage"]) == set(d2["memory"]["usage"])
        assert set(d1["cpu"]["usage"]) == set(d2["cpu"]["usage"])
        assert d1["pids"]["limit"] == d2["pids"]["limit"] == 40
        assert d1["memory"]["usage"]["limit"] == d2["memory"]["usage"]["limit"] == 64 << 20
        assert sorted(d1["memory"]["raw"]) == sorted(d2["memory"]["raw"])
        ps_ours = json.loads(pyrunc("ps", "--format", "json", pid_, check=True).stdout)
        ps_theirs = json.loads(runc("ps", "--format", "json", rid, check=True).stdout)
        assert len(ps_ours) == len(ps_theirs) == 1
    finally:
        runc.cleanup()
        shutil.rmtree(runc.root, ignore_errors=True)


# --- the real cgroup2 mount: cgroup.freeze and cgroup.kill work here (no controllers needed)

@pytest.fixture
def v2_cgroup():
    """A fresh cgroup directly on the real cgroup2 mount, removed afterwards (made with mkdir,
    not V2Manager.create, so the mount root's subtree_control is left as it is)."""
    from runtime.cgroups.v2 import V2Manager
    path = os.path.join(UNIFIED, f"pyrunc-test-{uuid.uuid4().hex[:8]}")
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.freeze")) and \
            not os.path.isdir(UNIFIED):
        pytest.skip("no cgroup2 mount")
    os.mkdir(path)
    procs = []
    mgr = V2Manager(path, UNIFIED)
    try:
        yield mgr, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        try:
            with open(os.path.join(path, "cgroup.freeze"), "w") as f:
                f.write("0")
        except OSError:
            pass
        deadline = time.monotonic() + 10
        while os.path.exists(path) and time.monotonic() < deadline:
            try:
                os.rmdir(path)
            except OSError:
                time.sleep(0.05)
        assert not os.path.exists(path)


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    rest = raw[raw.rindex(b")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def test_v2_freeze_and_kill_on_the_real_cgroup2_mount(v2_cgroup):
    mgr, procs = v2_cgroup
    busy = subprocess.Popen(["sh", "-c", "trap '' USR1; echo ready; while :; do :; done"],
                            stdout=subprocess.PIPE)
    procs.append(busy)
    assert busy.stdout.readline() == b"ready\n"
    busy.stdout.close()
    mgr.apply(busy.pid)
    assert mgr.pids() == [busy.pid]
    mgr.freeze(True)
    assert mgr.frozen()
    assert "frozen 1" in _read(os.path.join(mgr.path, "cgroup.events")).splitlines()
    t1 = _cpu_ticks(busy.pid)
    time.sleep(0.3)
    assert _cpu_ticks(busy.pid) == t1
    mgr.freeze(False)
    assert not mgr.frozen()
    time.sleep(0.3)
    assert _cpu_ticks(busy.pid) > t1
    # a catchable signal goes through freeze/signal/thaw, and a paused group stays paused
    trap = subprocess.Popen(["sh", "-c", "trap 'exit 5' USR1; echo ready; "
                             "while :; do sleep 0.05; done"], stdout=subprocess.PIPE)
    procs.append(trap)
    assert trap.stdout.readline() == b"ready\n"  # the trap is set
    trap.stdout.close()
    mgr.apply(trap.pid)
    mgr.freeze(True)
    mgr.kill(signal.SIGUSR1)
    assert mgr.frozen()
    mgr.freeze(False)
    assert trap.wait(timeout=10) == 5
    assert busy.poll() is None  # it ignores SIGUSR1
    mgr.freeze(True)
    mgr.kill(signal.SIGKILL)  # cgroup.kill, even while frozen
    assert busy.wait(timeout=10) == -signal.SIGKILL
    _wait(lambda: mgr.pids() == [], 10, "empty cgroup")


def test_v1_net_cls_net_prio_rdma_over_a_fake_tree(tmp_path):
    """FAKE v1 directories: net_cls, net_prio and rdma are not mounted on this host, so the
    file mapping is checked on temp dirs (a fake enforces nothing); the real host's answer,
    an error naming the controller, is test_setting_the_host_cannot_apply_fails_create_cleanly.
    """
    from runtime.cgroups import resources_v1
    paths = {}
    for ctrl, files in (("net_cls", ["net_cls.classid"]), ("net_prio", ["net_prio.ifpriomap"]),
                        ("rdma", ["rdma.max"])):
        d = tmp_path / ctrl
        d.mkdir()
        for f in files:
            (d / f).write_text("")
        paths[ctrl] = str(d)
    resources_v1.apply(paths, {"network": {"classID": 1048577,
                                           "priorities": [{"name": "eth0", "priority": 5}]},
                               "rdma": {"mlx5_1": {"hcaHandles": 3}}})
    assert (tmp_path / "net_cls/net_cls.classid").read_text() == "1048577"
    assert (tmp_path / "net_prio/net_prio.ifpriomap").read_text() == "eth0 5"
    assert (tmp_path / "rdma/rdma.max").read_text() == "mlx5_1 hca_handle=3"
    with pytest.raises(Exception, match="the memory cgroup controller is not mounted"):
        resources_v1.apply(paths, {"memory": {"limit": 1 << 20}})


def test_v2_device_rules_through_ebpf_on_the_real_cgroup2_mount(v2_cgroup):
    """Device programs attach to any cgroup2 directory and the kernel consults them for the
    tasks in it, next to the v1 devices controller: so the v2 device path runs for real here.
    The probe shell moves itself into the cgroup, then opens devices."""
    from runtime.cgroups import devices_bpf
    mgr, _procs = v2_cgroup

    def probe(script: str) -> str:
        p = subprocess.run(["sh", "-c", f"echo $$ > {mgr.path}/cgroup.procs; {script}"],
                           capture_output=True, timeout=30)
        return (p.stdout + p.stderr).decode()

    loop_r = "head -c1 /dev/loop0 >/dev/null && echo loop-r; "
    loop_rw = "(exec 3<>/dev/loop0) 2>/dev/null && echo loop-rw; "
    mgr.set({"devices": [{"allow": False, "access": "rwm"}]})
    out = probe(loop_r + loop_rw + "head -c1 /dev/zero >/dev/null && echo zero")
    assert "loop-r" not in out and "loop-rw" not in out and "zero" in out, out
    assert "Operation not permitted" in out
    mgr.set({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]})
    out = probe(loop_r + loop_rw)
    assert "loop-r" in out and "loop-rw" not in out, out
    mgr.set({"devices": [{"allow": True, "access": "rwm"},
                         {"allow": False, "type": "b", "major": 7, "minor": -1,
                          "access": "w"}]})
    out = probe(loop_r + loop_rw)
    assert "loop-r" in out and "loop-rw" not in out, out
    fd = os.open(mgr.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(devices_bpf.attached(fd)) == 1  # each set replaced the previous program
    finally:
        os.close(fd)
    with pytest.raises(Exception, match="bad access"):  # none of r, w, m
        mgr.set({"devices": [{"allow": True, "type": "c", "access": "xa"}]})
    # as runc: other letters are dropped ("rwa" is "rw")
    mgr.set({"devices": [{"allow": True, "access": "rwm"},
                         {"allow": False, "type": "b", "major": 7, "minor": -1,
                          "access": "wa"}]})
    out = probe(loop_r + loop_rw)
    assert "loop-r" in out and "loop-rw" not in out, out
