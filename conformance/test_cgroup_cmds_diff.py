"""The cgroup commands side by side, runc and pyrunc: `update` (runc's flags and the
LinuxResources JSON dockerd sends), pause/resume transitions, kill of a paused container, the
commands on a stopped one, `ps` shapes and `events --stats` keys. Each case starts the same
config under both runtimes and compares the transitions and the cgroup files read from the
host, runc on the left; where runc 1.1.5 differs by design the case says why."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from conformance.cgroupview import WEIGHT_FILE, Config, MiB, _sleeping, host_dir, read_host
from conformance.pair import NAMES, Pair

pytestmark = pytest.mark.peer


# -- update --------------------------------------------------------------------------------

UPDATE_FILES = ["memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
                "memory/memory.soft_limit_in_bytes", "cpu/cpu.shares", "cpu/cpu.cfs_quota_us",
                "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus", "pids/pids.max",
                "blkio/blkio.bfq.weight", "blkio/blkio.weight"]
INITIAL = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 40}, "cpu": {"shares": 512}}


def _update_steps(pair: Pair, config: Config, steps: list[list[str] | dict[str, Any]],
                  files: list[str] = UPDATE_FILES, initial: dict[str, Any] = INITIAL,
                  ) -> dict[str, list[Any]]:
    """Run the same `update` steps (argv lists, or LinuxResources dicts given on stdin with
    --resources -) on a live container under each runtime; after each step record whether it
    failed and the cgroup files from the host."""
    seen: dict[str, list[Any]] = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, pid = pair.start_detached(name, _sleeping(config, initial))
        trail: list[Any] = [read_host(pid, files)]
        for step in steps:
            if isinstance(step, list):
                p = rt("update", *step, cid)
            else:
                p = rt("update", "--resources", "-", cid, input=json.dumps(step).encode())
            trail.append({"failed": p.returncode != 0, **read_host(pid, files)})
        seen[name] = trail
    return seen


def test_update_flags(pair, config):
    """runc's per-field flags (note runc 1.1.5 spells it --cpu-share), a step both refuse
    (a memory limit above the memory+swap limit) that must change nothing, and -1."""
    weight = ["--blkio-weight", "300"] if WEIGHT_FILE else []
    steps: list[list[str] | dict[str, Any]] = [
        ["--memory", "128m", "--memory-swap", "256m", "--memory-reservation", "32m",
         "--cpu-share", "256", "--cpu-quota", "20000", "--cpu-period", "50000",
         "--cpuset-cpus", "0", "--pids-limit", "30", *weight],
        ["--memory", "512m"],
        ["--memory", "96m"],
        ["--memory", "-1", "--pids-limit", "-1", "--cpu-quota", "-1"],
        ["--blkio-weight", "200"],  # applied, or refused by both without weight files
    ]
    seen = _update_steps(pair, config, steps)
    assert [s.get("failed") for s in seen["runc"]] == [None, False, True, False, False,
                                                       WEIGHT_FILE is None]
    assert seen["pyrunc"] == seen["runc"], json.dumps(seen, indent=1)


def test_update_resources_stdin_like_dockerd(pair, config):
    """`update --resources -` with the LinuxResources dockerd sends through the shim: only
    set fields are present, and zero means unchanged (blockIO.weight and cpu.shares always
    come, as 0 when not asked for)."""
    steps: list[list[str] | dict[str, Any]] = [
        {"memory": {"limit": 128 * MiB, "swap": 256 * MiB}, "cpu": {"shares": 0,
         "quota": 50000, "period": 100000}, "pids": {"limit": 30}, "blockIO": {"weight": 0}},
        {"memory": {"reservation": 16 * MiB}, "cpu": {"shares": 1024, "cpus": "0"},
         "blockIO": {"weight": 200 if WEIGHT_FILE else 0}},
        {"cpu": {"shares": 0}, "blockIO": {"weight": 0}, "pids": {"limit": -1}},
        {"memory": {"limit": "64m"}},  # wrong type: both refuse
        {"blockIO": {"weight": 300}},  # applied, or refused by both without weight files
    ]
    seen = _update_steps(pair, config, steps)
    assert [s.get("failed") for s in seen["runc"]] == [None, False, False, False, True,
                                                       WEIGHT_FILE is None]
    assert seen["pyrunc"] == seen["runc"], json.dumps(seen, indent=1)


def test_update_fields_runc_ignores(pair, config):
    """Pinned: runc 1.1.5's `update` takes only the fields its flags name (memory limit,
    reservation, swap; cpu shares, quota, period, realtime, cpus, mems; pids; blockIO
    weight) and silently drops the rest of a --resources document; pyrunc applies every
    field it is given. Both agree on what both apply."""
    update = {"memory": {"swappiness": 20, "disableOOMKiller": True},
              "cpu": {"idle": 1, "burst": 1000},
              "blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 2 * MiB}]}}
    files = ["memory/memory.swappiness", "memory/memory.oom_control", "cpu/cpu.idle",
             "cpu/cpu.cfs_burst_us", "blkio/blkio.throttle.read_bps_device"]
    seen = _update_steps(pair, config, [update], files)
    before, runc_after = seen["runc"]
    assert runc_after == {"failed": False, **before}, "runc 1.1.5 applies these now: unpin"
    assert seen["pyrunc"][1] == {
        "failed": False, "memory/memory.swappiness": "20",
        "memory/memory.oom_control": "oom_kill_disable 1 | under_oom 0 | oom_kill 0",
        "cpu/cpu.idle": "1", "cpu/cpu.cfs_burst_us": "1000",
        "blkio/blkio.throttle.read_bps_device": f"7:0 {2 * MiB}"}


def test_update_leaves_device_rules_alone(pair, config):
    seen = _update_steps(pair, config, [{"devices": [{"allow": True, "access": "rwm"}]}],
                         ["devices/devices.list"])
    assert seen["runc"][0] == {k: v for k, v in seen["runc"][1].items() if k != "failed"}
    assert seen["pyrunc"][1]["devices/devices.list"] == seen["pyrunc"][0][
        "devices/devices.list"], seen["pyrunc"]


def test_update_blkio_weight_below_10(pair, config):
    """runc passes a weight below blkio's range of 10 to the kernel as is; without weight
    files (no BFQ/CFQ on the disk) both refuse."""
    seen = _update_steps(pair, config, [["--blkio-weight", "5"]],
                         ["blkio/blkio.bfq.weight", "blkio/blkio.weight"])
    assert seen["runc"][1]["failed"] is (WEIGHT_FILE is None)
    assert seen["pyrunc"] == seen["runc"]


# -- pause / resume, ps, events --------------------------------------------------------------

def _status(pair: Pair, name: str, cid: str) -> str:
    p = pair.rt[name]("state", cid)
    return json.loads(p.stdout)["status"] if p.returncode == 0 else "gone"


def _freezer(pid: int) -> str:
    try:
        return read_host(pid, ["freezer/freezer.state"])["freezer/freezer.state"]
    except (FileNotFoundError, ProcessLookupError, KeyError):
        return "-"


def test_pause_resume_transitions(pair, config):
    """Each step's exit status, the state's status and the freezer from the host; ps,
    events and update work on a paused container; delete refuses it, delete --force not."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, pid = pair.start_detached(name, _sleeping(config, {}))
        trail = []
        for step in (["pause"], ["pause"], ["ps", "--format", "json"], ["events", "--stats"],
                     ["update", "--pids-limit", "20"], ["delete"], ["resume"], ["resume"],
                     ["pause"], ["delete", "--force"]):
            p = rt(*step, cid)
            status = _status(pair, name, cid)
            trail.append((" ".join(step), p.returncode == 0, status,
                          _freezer(pid) if status != "gone" else "-"))
        seen[name] = trail
    assert seen["runc"][0] == ("pause", True, "paused", "FROZEN"), seen["runc"]
    assert seen["pyrunc"] == seen["runc"]


def test_pause_created(pair, config):
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, _sleeping(config, {}))
        cid = rt.new_id("pc")
        rt("create", "--bundle", b.path, cid, check=True)
        trail = []
        for step in ("pause", "resume", "start"):
            p = rt(step, cid)
            trail.append((step, p.returncode == 0, _status(pair, name, cid)))
        seen[name] = trail
    assert seen["runc"] == [("pause", True, "paused"), ("resume", True, "created"),
                            ("start", True, "running")]
    assert seen["pyrunc"] == seen["runc"]


def test_kill_paused(pair, config):
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, pid = pair.start_detached(name, _sleeping(config, {}))
        rt("pause", cid, check=True)
        rt("kill", cid, "KILL", check=True)
        deadline = time.monotonic() + 5
        while _status(pair, name, cid) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        seen[name] = _status(pair, name, cid)
    assert seen == {"runc": "stopped", "pyrunc": "stopped"}


def test_cgroup_commands_on_a_stopped_container(pair, config):
    """pause, resume, update and events refuse a stopped container under both; ps answers.
    Pinned: runc 1.1.5 prints `null` for no processes (a nil Go slice), pyrunc `[]`."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cfg = _sleeping(config, {})
        cfg["process"]["args"] = ["true"]
        b = pair.bundle(name, cfg)
        cid = rt.new_id("st")
        rt("create", "--bundle", b.path, cid, check=True)
        rt("start", cid, check=True)
        pair.wait_status(name, cid, "stopped")
        v = {step: rt(step, cid).returncode == 0 for step in ("pause", "resume", "events")}
        v["update"] = rt("update", "--pids-limit", "5", cid).returncode == 0
        ps = rt("ps", "--format", "json", cid)
        v["ps"] = (ps.returncode, json.loads(ps.stdout))
        seen[name] = v
    assert seen["runc"]["ps"] == (0, None), "runc prints [] now: unpin"
    assert seen["pyrunc"]["ps"] == (0, [])
    for v in seen.values():
        v.pop("ps")
    assert seen["runc"] == {"pause": False, "resume": False, "events": False,
                            "update": False}
    assert seen["pyrunc"] == seen["runc"]


TWO_CHILDREN = ["sh", "-c", "sleep 120 & sleep 121 & wait"]


def _host_procs(pid: int) -> list[int]:
    with open(os.path.join(host_dir(pid, "pids"), "cgroup.procs")) as f:
        return sorted(int(x) for x in f.read().split())


def test_ps_shapes(pair, config):
    """`ps --format json`: a JSON array of ints, the container's processes as the host's
    cgroup.procs lists them; the table: ps -ef's header and one line per process."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cfg = _sleeping(config, {})
        cfg["process"]["args"] = TWO_CHILDREN
        cid, pid = pair.start_detached(name, cfg)
        deadline = time.monotonic() + 10
        while len(_host_procs(pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
        assert isinstance(pids, list) and all(type(x) is int for x in pids), (name, pids)
        assert sorted(pids) == _host_procs(pid), name
        table = rt("ps", cid, check=True).stdout.decode().splitlines()
        seen[name] = {"count": len(pids), "header": table[0].split(),
                      "rows": len(table) - 1,
                      "commands": sorted(" ".join(r.split()[7:]) for r in table[1:])}
    assert seen["runc"]["count"] == 3
    assert seen["pyrunc"] == seen["runc"]


def _key_sets(value: Any, depth: int = 2) -> Any:
    """A stats document reduced to its keys, `depth` levels down."""
    if isinstance(value, dict):
        if depth == 0:
            return sorted(value)
        return {k: _key_sets(v, depth - 1) for k, v in sorted(value.items())}
    return type(value).__name__


def test_events_stats_keys(pair, config):
    """`events --stats`: the same top-level keys and type, and for every data section both
    report (non-empty) the same keys two levels down. Pinned: hugetlb, which pyrunc reads
    from the cgroup2 mount where this host binds it and runc 1.1.5 (v1 only) leaves empty."""
    cfg = _sleeping(config, {"memory": {"limit": 64 * MiB}, "pids": {"limit": 40},
                             "cpu": {"shares": 512}})
    cfg["process"]["args"] = TWO_CHILDREN
    docs, unified = {}, ""
    for name in NAMES:
        cid, pid = pair.start_detached(name, cfg)
        unified = host_dir(pid, "unified")
        ev = json.loads(pair.rt[name]("events", "--stats", cid, check=True).stdout)
        assert ev["type"] == "stats" and ev["id"] == cid, ev
        docs[name] = ev
    ref, got = docs["runc"], docs["pyrunc"]
    assert sorted(got) == sorted(ref) == ["data", "id", "type"]
    assert sorted(got["data"]) == sorted(ref["data"])
    both = [k for k in ref["data"] if ref["data"][k] and got["data"].get(k)]
    assert {"cpu", "memory", "pids"} <= set(both), both
    shapes = {name: {k: _key_sets(d["data"][k]) for k in both} for name, d in docs.items()}
    assert shapes["pyrunc"] == shapes["runc"]
    assert ref["data"]["hugetlb"] == {}, "runc reports hugetlb now: unpin"
    sizes = sorted({n.split(".")[1] for n in os.listdir(unified)
                    if n.startswith("hugetlb.") and n.count(".") == 2 and n.endswith(".max")})
    assert sorted(got["data"]["hugetlb"]) == sizes
