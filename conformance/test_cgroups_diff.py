"""runc 1.1.5's cgroups.bats and exec.bats cgroup cases, runc and pyrunc side by side.

A container's cgroupsPath may name a cgroup that already holds processes (runc warns and
runs) or that is frozen (runc refuses: whatever enters it would freeze). pyrunc once froze
itself there and hung, so every runtime command here has a subprocess timeout and each case
a pytest timeout: a regression fails instead of hanging. `exec` refuses a paused container
(255) unless --ignore-paused, and --cgroup puts the exec'd process in a sub-cgroup.

Each case uses its own top-level cgroup name; whatever is left under it is thawed, killed
and removed afterwards (and the pair fixture checks the runtimes left nothing either).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import threading
import time
from typing import Any

import pytest

from conformance.pair import NAMES, Pair
from tests.cgroup_paths import CgroupNames, is_v2_host, pids_in, unified_dir, v1_dir

pytestmark = [pytest.mark.peer, pytest.mark.timeout(180)]

Config = dict[str, Any]
NOT_EMPTY = re.compile(r"container's cgroup is not empty: (\d+) process\(es\) found")
FROZEN = "container's cgroup unexpectedly frozen"
T = 20  # seconds any single runtime command may take


@pytest.fixture
def cgnames():
    names = CgroupNames()
    yield names
    left = names.cleanup()
    assert not left, f"cgroups left behind: {left}"


def _cfg(config: Config, cgroups_path: str, args: list[str] | None = None,
         resources: dict[str, Any] | None = None) -> Config:
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = args or ["sleep", "120"]
    cfg["linux"]["cgroupsPath"] = cgroups_path
    cfg["linux"]["resources"].update(resources or {})
    return cfg


def _warned(p: subprocess.CompletedProcess) -> int | None:
    """The process count of the non-empty warning, None without one."""
    m = NOT_EMPTY.search(p.stderr.decode(errors="replace"))
    return int(m.group(1)) if m else None


def _freezer_dir(path: str) -> tuple[str, str, str]:
    """(directory, file, frozen value) of the freezer runc's test freezes for `path`."""
    if is_v2_host():
        d = unified_dir(path)
        assert d, "no cgroup2 mount"
        return d, "cgroup.freeze", "1"
    d = v1_dir("freezer", path)
    if d is None:
        pytest.skip("this host has no v1 freezer hierarchy")
    return d, "freezer.state", "FROZEN"


def test_non_empty_cgroup_warns_and_runs(cgnames, pair: Pair, config):
    """cgroups.bats: a second `run -d` and a `create` into the cgroup of a running
    container warn (naming the count) and still succeed."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, _cfg(config, "/" + cgnames.new()))
        ids = [rt.new_id("cg") for _ in range(3)]
        steps = [rt("run", "-d", "--bundle", b.path, ids[0], timeout=T),
                 rt("run", "-d", "--bundle", b.path, ids[1], timeout=T),
                 rt("create", "--bundle", b.path, ids[2], timeout=T)]
        seen[name] = [(p.returncode, _warned(p)) for p in steps]
        seen[name] += [rt.state(cid)["status"] for cid in ids]
        for cid in reversed(ids):
            rt("delete", "--force", cid, timeout=T)
    assert seen["runc"] == [(0, None), (0, 1), (0, 2), "running", "running", "created"]
    assert seen["pyrunc"] == seen["runc"]


def test_pre_existing_frozen_cgroup_is_refused(cgnames, pair: Pair, config):
    """cgroups.bats: `run -d` and `create` into a frozen cgroup fail with runc's words
    (exit 1), leave no container, and leave the frozen directory as they found it."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        path = "/" + cgnames.new()
        d, file, value = _freezer_dir(path)
        os.makedirs(d)
        with open(os.path.join(d, file), "w") as f:
            f.write(value)
        b = pair.bundle(name, _cfg(config, path))
        ids = [rt.new_id("cg"), rt.new_id("cg")]
        steps = [rt("run", "-d", "--bundle", b.path, ids[0], timeout=T),
                 rt("create", "--bundle", b.path, ids[1], timeout=T)]
        seen[name] = [(p.returncode, FROZEN in p.stderr.decode(errors="replace"))
                      for p in steps]
        seen[name] += [rt("state", cid).returncode != 0 for cid in ids]
        seen[name].append((os.path.isdir(d), pids_in(d)))
    assert seen["runc"] == [(1, True), (1, True), True, True, (True, [])]
    assert seen["pyrunc"] == seen["runc"]


def test_cgroup_of_a_paused_container_is_refused(cgnames, pair: Pair, config):
    """The hang that was caught: `run -d` with the cgroupsPath of a PAUSED container. runc
    warns (non-empty), refuses (frozen), and the paused container is left as it was."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, _cfg(config, "/" + cgnames.new()))
        ct1, ct2 = rt.new_id("cg"), rt.new_id("cg")
        rt("run", "-d", "--bundle", b.path, ct1, timeout=T, check=True)
        rt("pause", ct1, timeout=T, check=True)
        p = rt("run", "-d", "--bundle", b.path, ct2, timeout=T)
        seen[name] = [p.returncode, _warned(p), FROZEN in p.stderr.decode(errors="replace"),
                      rt("state", ct2).returncode != 0, rt.state(ct1)["status"]]
        rt("resume", ct1, timeout=T, check=True)
        seen[name].append(rt.state(ct1)["status"])
        rt("delete", "--force", ct1, timeout=T, check=True)
    assert seen["runc"] == [1, 1, True, True, "paused", "running"]
    assert seen["pyrunc"] == seen["runc"]


def test_exec_refuses_a_paused_container(cgnames, pair: Pair, config):
    """cgroups.bats: exec into a paused container exits 255 with runc's words; with
    --ignore-paused it waits for the resume and then runs. The runtime's own process is
    never in the frozen cgroup meanwhile."""
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        path = "/" + cgnames.new()
        d, _file, _value = _freezer_dir(path)
        b = pair.bundle(name, _cfg(config, path))
        cid = rt.new_id("cg")
        rt("run", "-d", "--bundle", b.path, cid, timeout=T, check=True)
        rt("pause", cid, timeout=T, check=True)
        p = rt("exec", cid, "echo", "ok", timeout=T)
        refused = (p.returncode, "cannot exec in a paused container" in p.stderr.decode())
        with open(f"{pair.workdir}/{name}-exec.out", "w+b") as out:
            proc = subprocess.Popen([rt.binary, "--root", rt.root, "exec", "--ignore-paused",
                                     cid, "echo", "ok"], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)
                runtime_frozen = proc.pid in pids_in(d)
                t0 = time.monotonic()
                timer = threading.Timer(0.5, rt, ("resume", cid), {"timeout": T})
                timer.start()
                rc = proc.wait(timeout=T)
                waited = time.monotonic() - t0 > 0.3
                timer.join()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            text = out.read().decode(errors="replace").strip()
        seen[name] = [refused, rc, text, waited, runtime_frozen, rt.state(cid)["status"]]
        rt("delete", "--force", cid, timeout=T, check=True)
    assert seen["runc"] == [(255, True), 0, "ok", True, False, "running"]
    assert seen["pyrunc"] == seen["runc"]


def _writable_cgroup_mount(cfg: Config) -> Config:
    for m in cfg["mounts"]:
        if m["type"] == "cgroup":
            m["options"] = [o for o in m.get("options", []) if o != "ro"]
    return cfg


def test_exec_cgroup_sub_cgroups_v1(cgnames, pair: Pair, config):
    """exec.bats "runc exec --cgroup sub-cgroups [v1]": a parent or unknown controller is
    refused before anything starts, a missing sub-cgroup when the pid is added, `/` is
    the container's own, and CTRL[,CTRL]:PATH puts the process there (mkdir'd from inside
    through a writable cgroup mount)."""
    if is_v2_host():
        pytest.skip("cgroup v2 host: the [v1] case does not apply")
    if not all(v1_dir(c, "/") for c in ("memory", "cpu", "cpuacct")):
        pytest.skip("this host lacks a v1 memory, cpu or cpuacct hierarchy")
    steps: list[tuple[list[str], str | None]] = [
        (["--cgroup", "..", "cat", "/proc/self/cgroup"], " .. is not a sub cgroup path"),
        (["--cgroup", "nonexistent", "cat", "/proc/self/cgroup"], None),
        (["--cgroup", "cpu:nonexistent", "cat", "/proc/self/cgroup"], None),
        (["--cgroup", "whaaat:/", "true"], "unknown controller "),
        (["cat", "/proc/self/cgroup"], None),
        (["--cgroup", "/", "cat", "/proc/self/cgroup"], None),
        (["sh", "-euc", "mkdir -p /sys/fs/cgroup/memory/submem /sys/fs/cgroup/cpu/subcpu "
          "/sys/fs/cgroup/cpuacct/subcpu"], None),
        (["--cgroup", "memory:submem", "--cgroup", "cpu,cpuacct:subcpu",
          "cat", "/proc/self/cgroup"], None),
    ]
    missing = re.compile(r" adding pid .*/nonexistent/cgroup\.procs: no such file ")
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        path = "/" + cgnames.new()
        b = pair.bundle(name, _writable_cgroup_mount(_cfg(config, path)))
        cid = rt.new_id("cg")
        rt("run", "-d", "--bundle", b.path, cid, timeout=T, check=True)
        trail = []
        for args, words in steps:
            p = rt("exec", *_flags(args), cid, *_cmd(args), timeout=T)
            err = p.stderr.decode(errors="replace")
            lines = sorted(x.split(":", 1)[1].replace(path, "<CG>")
                           for x in p.stdout.decode().splitlines())
            trail.append((p.returncode != 0,
                          words in err if words else bool(missing.search(err)), lines))
        seen[name] = trail
        rt("delete", "--force", cid, timeout=T, check=True)
    r = seen["runc"]
    assert [t[:2] for t in r[:4]] == [(True, True)] * 4, r
    assert all(line.endswith(":<CG>") for line in r[4][2]) and r[5] == r[4], r
    assert ("memory:<CG>/submem" in r[7][2] and
            any(x.startswith("cpu") and x.endswith(":<CG>/subcpu") for x in r[7][2])), r
    assert seen["pyrunc"] == seen["runc"]


def _flags(args: list[str]) -> list[str]:
    out = []
    while args and args[0] == "--cgroup":
        out += args[:2]
        args = args[2:]
    return out


def _cmd(args: list[str]) -> list[str]:
    return args[len(_flags(args)):]


def test_v1_with_unified_resources_is_invalid(cgnames, pair: Pair, config):
    """cgroups.bats "runc run (cgroup v1 + unified resources should fail)": both refuse
    with 'invalid configuration' and leave nothing behind."""
    if is_v2_host():
        pytest.skip("cgroup v2 host: unified resources are valid here")
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cfg = _cfg(config, "/" + cgnames.new(), resources={
            "pids": {"limit": 100}, "unified": {"memory.min": "131072"}})
        b = pair.bundle(name, cfg)
        cid = rt.new_id("cg")
        p = rt("run", "-d", "--bundle", b.path, cid, timeout=T)
        seen[name] = (p.returncode != 0, "invalid configuration" in p.stderr.decode(),
                      rt("state", cid).returncode != 0)
    assert seen["runc"] == (True, True, True)
    assert seen["pyrunc"] == seen["runc"]
