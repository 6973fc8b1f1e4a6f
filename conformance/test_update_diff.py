"""runc 1.1.5's update.bats on this host, runc and pyrunc side by side.

Each case runs the same config (update.bats' initial limits: memory 32 MiB / reservation
24 MiB, cpu shares 100, quota 500000 per 1000000, pids 20) under both runtimes with its own
top-level cgroupsPath, applies the same `update` steps and records, after each, whether it
failed and the cgroup files read from the HOST. Every runtime command is bounded; whatever
a case leaves under its cgroup name is thawed, killed and removed afterwards.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest

from conformance.pair import NAMES, Pair
from tests.cgroup_paths import CgroupNames, is_v2_host, v1_dir

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]

Config = dict[str, Any]
T = 20
MiB = 1 << 20
INITIAL = {"memory": {"limit": 32 * MiB, "reservation": 24 * MiB},
           "cpu": {"shares": 100, "quota": 500000, "period": 1000000}, "pids": {"limit": 20}}
CPU = ["cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "cpu/cpu.shares"]
COMMON = ["memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes",
          "memory/memory.memsw.limit_in_bytes", "pids/pids.max", "cpuset/cpuset.cpus", *CPU]


@pytest.fixture
def cgnames():
    names = CgroupNames()
    yield names
    left = names.cleanup()
    assert not left, f"cgroups left behind: {left}"


@pytest.fixture(autouse=True)
def _v1_only():
    if is_v2_host():
        pytest.skip("these update.bats cases are compared on cgroup v1 files")


def _read(path: str, files: list[str]) -> dict[str, str]:
    out = {}
    for spec in files:
        ctrl, name = spec.split("/", 1)
        d = v1_dir(ctrl, path)
        try:
            with open(os.path.join(d or "/nonexistent", name)) as f:
                out[spec] = f.read().strip()
        except OSError:
            out[spec] = "<missing>"
    return out


def _steps(pair: Pair, cgnames: CgroupNames, config: Config, resources: dict[str, Any],
           steps: list[list[str] | dict[str, Any]], files: list[str],
           prepare=None) -> dict[str, list[Any]]:
    """{runtime: [run's (rc == 0, files), then (failed, files) per update step]}."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        top = cgnames.new()
        path = f"/{top}/ct"
        if prepare is not None:
            prepare(top)
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sleep", "120"]
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"].update(copy.deepcopy(resources))
        b = pair.bundle(name, cfg)
        cid = rt.new_id("up")
        p = rt("run", "-d", "--bundle", b.path, cid, timeout=T)
        trail: list[Any] = [(p.returncode == 0, _read(path, files))]
        for step in steps if p.returncode == 0 else []:
            if isinstance(step, list):
                q = rt("update", *step, cid, timeout=T)
            else:
                q = rt("update", "-r", "-", cid, input=json.dumps(step).encode(), timeout=T)
            trail.append((q.returncode != 0, _read(path, files)))
        seen[name] = trail
        rt("delete", "--force", cid, timeout=T)
    return seen


def _same(seen: dict[str, list[Any]]) -> None:
    assert seen["pyrunc"] == seen["runc"], json.dumps(seen, indent=1)


def test_update_common_limits(cgnames, pair, config):
    """update.bats "update cgroup v1/v2 common limits" (v1 files; swap when there is)."""
    swap = _read("", ["memory/memory.memsw.limit_in_bytes"])
    steps: list[list[str] | dict[str, Any]] = [
        ["--cpuset-cpus", "0"] if os.cpu_count() == 1 else ["--cpuset-cpus", "1"],
        ["--memory", "67108864"], ["--memory", "50M"], ["--memory-reservation", "33554432"]]
    if swap["memory/memory.memsw.limit_in_bytes"] != "<missing>":
        steps += [["--memory-swap", "-1"], ["--memory-swap", "96468992"]]
    steps += [["--memory", "-1"], ["--pids-limit", "10"], ["--pids-limit", "-1"],
              {**INITIAL, "cpu": {**INITIAL["cpu"], "cpus": "0"}},
              ["--cpu-period", "900000", "--cpu-quota", "600000", "--cpu-share", "200",
               "--memory", "67108864", "--memory-reservation", "33554432",
               "--pids-limit", "10"]]
    if swap["memory/memory.memsw.limit_in_bytes"] != "<missing>":
        steps += [["--memory", "30M", "--memory-swap", "50M"],
                  ["--memory", "60M", "--memory-swap", "80M"]]
    seen = _steps(pair, cgnames, config, INITIAL, steps, COMMON)
    assert not any(failed for failed, _ in seen["runc"][1:]), seen["runc"]
    _same(seen)


CPU_CASES = {
    "cpu limits": (INITIAL, [
        ["--cpu-period", "900000"], ["--cpu-quota", "600000"], ["--cpu-quota", "-1"],
        ["--cpu-share", "200"], {"cpu": {"shares": 100, "quota": 500000, "period": 1000000}},
        ["--cpu-period", "900000", "--cpu-quota", "600000", "--cpu-share", "200"],
        ["--cpu-quota", "-1", "--cpu-period", "100000"]]),
    "period without quota": ({"cpu": {"period": 1000000}}, []),
    "invalid period": ({"cpu": {"period": 100}}, []),
    "quota without period": ({"cpu": {"quota": 5000}}, []),
    "period alone, none before": ({"cpu": {}}, [["--cpu-period", "50000"]]),
    "quota alone, none before": ({"cpu": {}}, [["--cpu-quota", "30000"]]),
}


@pytest.mark.parametrize("case", list(CPU_CASES))
def test_update_cpu(cgnames, pair, config, case):
    """update.bats' cpu cases: the quota, period and shares files after run and each step
    (an invalid period fails `run` under both)."""
    resources, steps = CPU_CASES[case]
    seen = _steps(pair, cgnames, config, resources, steps, CPU)
    assert seen["runc"][0][0] is (case != "invalid period")
    _same(seen)


def test_update_cpu_in_a_pod_cgroup(cgnames, pair, config):
    """update.bats "update cpu period in a pod cgroup with pod limit set": above the pod's
    50% fails, a lower period with 30% works."""
    if not v1_dir("cpu", "/"):
        pytest.skip("no v1 cpu hierarchy")

    def pod(top: str) -> None:
        d = v1_dir("cpu", "/" + top)
        os.makedirs(d)
        with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
            f.write("50000")

    steps: list[list[str] | dict[str, Any]] = [
        ["--cpu-quota", "60000"], ["--cpu-period", "10000", "--cpu-quota", "3000"]]
    seen = _steps(pair, cgnames, config, {"cpu": {}}, steps, CPU, pod)
    assert [f for f, _ in seen["runc"][1:]] == [True, False]
    _same(seen)


def test_update_rt_period_and_runtime(cgnames, pair, config):
    """update.bats "update rt period and runtime", with a small RT budget given to the pod.
    Pinned: runc 1.1.5 writes the new period before the runtime, so lowering both fails
    with EINVAL (runc issue 4094, fixed in later runc, whose test expects success);
    pyrunc orders the writes so both steps succeed. The other steps agree."""
    d = v1_dir("cpu", "/")
    if not d or not os.path.exists(os.path.join(d, "cpu.rt_runtime_us")):
        pytest.skip("no RT group scheduling (cpu.rt_runtime_us) on this host")
    budget = "200000"

    def pod(top: str) -> None:
        for sub in (f"/{top}", f"/{top}/ct"):
            p = v1_dir("cpu", sub)
            os.makedirs(p)
            try:
                for name, value in (("cpu.rt_period_us", "1000000"),
                                    ("cpu.rt_runtime_us", budget)):
                    with open(os.path.join(p, name), "w") as f:
                        f.write(value)
            except OSError as e:
                pytest.skip(f"cannot give the pod an RT budget here: {e.strerror}")

    steps: list[list[str] | dict[str, Any]] = [
        {"cpu": {"realtimeRuntime": 100001}},
        {"cpu": {"realtimePeriod": 800001, "realtimeRuntime": 100001}},
        ["--cpu-rt-period", "900001", "--cpu-rt-runtime", "150001"],
        ["--cpu-rt-period", "10000", "--cpu-rt-runtime", "1000"],
        ["--cpu-rt-period", "100000", "--cpu-rt-runtime", "20000"]]
    files = ["cpu/cpu.rt_period_us", "cpu/cpu.rt_runtime_us"]
    seen = _steps(pair, cgnames, config, INITIAL, steps, files, pod)
    assert seen["pyrunc"][:4] == seen["runc"][:4], json.dumps(seen, indent=1)
    assert [f for f, _ in seen["runc"][4:]] == [True, True], "runc fixed #4094: unpin"
    assert seen["pyrunc"][4:] == [
        (False, {"cpu/cpu.rt_period_us": "10000", "cpu/cpu.rt_runtime_us": "1000"}),
        (False, {"cpu/cpu.rt_period_us": "100000", "cpu/cpu.rt_runtime_us": "20000"})]


def test_update_devices_minimal_transition_rules(cgnames, pair, config):
    """update.bats "update devices [minimal transition rules]": a deny rule with access
    "rwa" (runc ignores the letters it does not know) and a loop reading /dev/kmsg into
    /dev/null; 30 `update`s must never let a read through or /dev/null be denied."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cfg = copy.deepcopy(config)
        cfg["linux"]["cgroupsPath"] = "/" + cgnames.new()
        cfg["linux"]["resources"].update(copy.deepcopy(INITIAL))
        cfg["linux"]["resources"]["devices"] = [
            {"allow": False, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]
        cfg["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
        for s in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][s] = cfg["process"]["capabilities"][s] + ["CAP_SYSLOG"]
        cfg["process"]["args"] = ["sh", "-c", "exec >/probe/out 2>/probe/err; "
                                  "while true; do head -c 100 /dev/kmsg 2>/dev/null; done"]

        def probe(c: Config, bundle: str) -> None:
            os.makedirs(os.path.join(bundle, "probe"))
            c["mounts"].append({"destination": "/probe", "type": "bind", "options": ["rbind"],
                                "source": os.path.join(bundle, "probe")})

        b = pair.bundle(name, cfg, probe)
        cid = rt.new_id("up")
        p = rt("run", "-d", "--bundle", b.path, cid, timeout=T)
        fails = [rt("update", "--pids-limit", "30", cid, timeout=T).returncode != 0
                 for _ in range(30 if p.returncode == 0 else 0)]
        running = rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running"
        rt("delete", "--force", cid, timeout=T)
        out = {}
        for f in ("out", "err"):
            try:
                with open(os.path.join(b.path, "probe", f), "rb") as fh:
                    out[f] = fh.read().decode(errors="replace")
            except FileNotFoundError:
                out[f] = "<missing>"
        seen[name] = (p.returncode, p.stderr.decode(errors="replace").strip()[-200:],
                      any(fails), running, out)
    assert seen["runc"] == (0, "", False, True, {"out": "", "err": ""}), seen["runc"]
    assert seen["pyrunc"] == seen["runc"]


def test_update_paused_container(cgnames, pair, config):
    """update.bats "update paused container": an unrelated update of a paused container
    succeeds at once (bounded), applies, and leaves it paused; resume works."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        top = cgnames.new()
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sleep", "120"]
        cfg["linux"]["cgroupsPath"] = f"/{top}/ct"
        cfg["linux"]["resources"].update(copy.deepcopy(INITIAL))
        b = pair.bundle(name, cfg)
        cid = rt.new_id("up")
        rt("run", "-d", "--bundle", b.path, cid, timeout=T, check=True)
        rt("pause", cid, timeout=T, check=True)
        p = rt("update", "--pids-limit", "30", cid, timeout=T)
        seen[name] = [p.returncode, rt.state(cid)["status"],
                      _read(f"/{top}/ct", ["pids/pids.max", "freezer/freezer.state"])]
        seen[name] += [rt("resume", cid, timeout=T).returncode, rt.state(cid)["status"]]
        rt("delete", "--force", cid, timeout=T)
    assert seen["runc"] == [0, "paused", {"pids/pids.max": "30",
                                          "freezer/freezer.state": "FROZEN"}, 0, "running"]
    assert seen["pyrunc"] == seen["runc"]
