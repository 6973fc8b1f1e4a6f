"""pyrunc never freezes itself in a container's cgroup, and never waits forever on one.

The runtime's own processes (create's parent, exec's intermediate) never enter a
container's cgroup: only the container's processes are put there, by pid. A frozen
cgroupsPath is refused; one frozen while create waits is noticed; a failed create removes
only the directories it made. Cases runc 1.1.5 cannot be compared on (it hangs) live here;
the side-by-side ones are in conformance/test_cgroups_diff.py.

Each runtime command has a subprocess timeout and each case a pytest timeout, so a
regression fails instead of hanging. Whatever a case leaves under its cgroup name is
thawed, killed and removed (tests/cgroup_paths.py).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.cgroup_paths import CgroupNames, is_v2_host, pids_in, unified_dir, v1_dir

pytestmark = pytest.mark.timeout(120)
T = 20
FROZEN = "container's cgroup unexpectedly frozen"


@pytest.fixture
def cgnames():
    names = CgroupNames()
    yield names
    left = names.cleanup()
    assert not left, f"cgroups left behind: {left}"


def _freezer(path: str) -> tuple[str, str, str]:
    """(directory, file, frozen value) of the freezer holding cgroupsPath `path`."""
    if is_v2_host():
        d = unified_dir(path)
        assert d
        return d, "cgroup.freeze", "1"
    d = v1_dir("freezer", path)
    if d is None:
        pytest.skip("no v1 freezer hierarchy on this host")
    return d, "freezer.state", "FROZEN"


def _no_state(pyrunc, cid: str) -> bool:
    return not os.path.exists(os.path.join(pyrunc.root, cid))


def test_frozen_cgroup2_dir_beside_v1_is_refused(cgnames, pyrunc, bundle):
    """Hybrid host: only the cgroup2 directory beside the v1 ones is frozen. runc 1.1.5
    checks the v1 freezer only and hangs here; pyrunc refuses, as for a frozen freezer."""
    if is_v2_host():
        pytest.skip("not a hybrid host")
    top = cgnames.new()
    d = unified_dir("/" + top)
    if d is None or v1_dir("freezer", "/") is None:
        pytest.skip("no cgroup2 mount beside the v1 hierarchies")
    os.makedirs(d)
    with open(os.path.join(d, "cgroup.freeze"), "w") as f:
        f.write("1")
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["cgroupsPath"] = "/" + top
    bundle.write()
    cid = pyrunc.new_id("fz")
    p = pyrunc("run", "-d", "--bundle", bundle.path, cid, timeout=T)
    assert p.returncode == 1 and FROZEN in p.stderr.decode(), p.stderr
    assert _no_state(pyrunc, cid)
    assert os.path.isdir(d) and pids_in(d) == []  # not ours to remove, nothing left in it


def test_freeze_while_create_waits_is_noticed(cgnames, pyrunc, bundle):
    """A createRuntime hook freezes the container's cgroup while create waits for the
    init: create fails within seconds, the init is killed (moved out of the v1 freezer
    first), and nothing is left: no state, no process, no directory it made."""
    top = cgnames.new()
    d, file, value = _freezer(f"/{top}")
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["cgroupsPath"] = "/" + top
    bundle.config["hooks"] = {"createRuntime": [{
        "path": "/bin/sh", "args": ["sh", "-c", f"echo {value} > {d}/{file}"]}]}
    bundle.write()
    cid = pyrunc.new_id("fz")
    t0 = time.monotonic()
    p = pyrunc("create", "--bundle", bundle.path, cid, timeout=T)
    assert p.returncode == 1 and FROZEN in p.stderr.decode(), p.stderr
    assert time.monotonic() - t0 < 10
    assert _no_state(pyrunc, cid)
    assert cgnames.dirs() == [], "create left directories it made"


def test_exec_puts_only_the_container_process_in_a_frozen_cgroup(cgnames, pyrunc, bundle):
    """exec --ignore-paused into a paused container: while it waits for the resume, every
    process in the container's freezer cgroup is in the container's pid namespace (the
    exec'd process); neither `pyrunc exec` nor its intermediate (host pid namespace) is."""
    top = cgnames.new()
    d, _file, _value = _freezer(f"/{top}")
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["cgroupsPath"] = "/" + top
    bundle.write()
    cid = pyrunc.new_id("fz")
    pyrunc("run", "-d", "--bundle", bundle.path, cid, timeout=T, check=True)
    init = pyrunc.state(cid)["pid"]
    pyrunc("pause", cid, timeout=T, check=True)
    with open(os.path.join(bundle.path, "exec.out"), "w+b") as out:
        proc = subprocess.Popen([pyrunc.binary, "--root", pyrunc.root, "exec",
                                 "--ignore-paused", cid, "echo", "ok"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while len(pids_in(d)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            inside = pids_in(d)
            ns = {pid: os.readlink(f"/proc/{pid}/ns/pid") for pid in inside}
            assert len(inside) == 2 and proc.pid not in inside, inside
            assert set(ns.values()) == {os.readlink(f"/proc/{init}/ns/pid")}, ns
            assert proc.poll() is None  # it waits for the resume ...
            pyrunc("resume", cid, timeout=T, check=True)
            assert proc.wait(timeout=T) == 0  # ... and then the process runs
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        assert out.read().decode().strip() == "ok"


def test_failed_create_leaves_a_shared_cgroup_alone(cgnames, pyrunc, make_bundle):
    """A create that fails after joining another container's cgroup (a bad setting)
    removes nothing of that cgroup: the first container keeps running in it."""
    top = cgnames.new()
    first, second = make_bundle(["sleep", "60"]), make_bundle(["sleep", "60"])
    for b in (first, second):
        b.config["linux"]["cgroupsPath"] = f"/{top}/ct"
    second.config["linux"]["resources"]["cpu"] = {"period": 100}  # EINVAL from the kernel
    first.write()
    second.write()
    a, b_id = pyrunc.new_id("fz"), pyrunc.new_id("fz")
    pyrunc("run", "-d", "--bundle", first.path, a, timeout=T, check=True)
    dirs = cgnames.dirs()
    t0 = time.monotonic()
    p = pyrunc("create", "--bundle", second.path, b_id, timeout=T)
    assert p.returncode == 1 and b"cpu.cfs_period_us" in p.stderr, p.stderr
    assert b"not empty: 1 process(es)" in p.stderr
    assert time.monotonic() - t0 < 5
    assert _no_state(pyrunc, b_id)
    assert cgnames.dirs() == dirs
    assert pyrunc.state(a)["status"] == "running"


def test_exec_refuses_a_cgroup_frozen_another_way(cgnames, pyrunc, bundle):
    """Hybrid host: the container's cgroup2 directory is frozen while its v1 freezer is
    not (state says running). exec refuses at once, as for a paused container, instead
    of waiting for a thaw; --ignore-paused still waits and then runs."""
    if is_v2_host():
        pytest.skip("not a hybrid host")
    top = cgnames.new()
    d = unified_dir("/" + top)
    if d is None:
        pytest.skip("no cgroup2 mount beside the v1 hierarchies")
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["cgroupsPath"] = "/" + top
    bundle.write()
    cid = pyrunc.new_id("fz")
    pyrunc("run", "-d", "--bundle", bundle.path, cid, timeout=T, check=True)
    with open(os.path.join(d, "cgroup.freeze"), "w") as f:
        f.write("1")
    try:
        assert pyrunc.state(cid)["status"] == "running"
        p = pyrunc("exec", cid, "true", timeout=T)
        assert p.returncode == 255 and b"cannot exec in a paused container" in p.stderr
    finally:
        with open(os.path.join(d, "cgroup.freeze"), "w") as f:
            f.write("0")
    assert pyrunc("exec", cid, "true", timeout=T).returncode == 0
