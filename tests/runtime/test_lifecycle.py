"""The lifecycle as runtime-spec runtime.md defines it, driven through the CLI."""

from __future__ import annotations

import json
import os
import time

from tests.rig import cgroup_leftovers


def _wait_status(pyrunc, cid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = pyrunc.state(cid)["status"]
        if st == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never reached {want}")


def test_create_start_state_delete(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    pidfile = os.path.join(bundle.path, "pid")
    pyrunc("create", "--bundle", bundle.path, "--pid-file", pidfile, cid, check=True)
    st = pyrunc.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == bundle.path
    assert st["pid"] == int(open(pidfile).read())
    for key in ("ociVersion", "rootfs", "created", "owner"):
        assert key in st
    # the init waits, not yet running the user's program
    assert "sleep" not in open(f"/proc/{st['pid']}/cmdline").read()
    pyrunc("start", cid, check=True)
    _wait_status(pyrunc, cid, "running")
    assert open(f"/proc/{st['pid']}/cmdline").read().startswith("sleep")
    p = pyrunc("delete", cid)
    assert p.returncode != 0 and b"not stopped" in p.stderr
    pyrunc("kill", cid, "KILL", check=True)
    _wait_status(pyrunc, cid, "stopped")
    assert pyrunc.state(cid)["pid"] == 0
    p = pyrunc("kill", cid, "TERM")
    assert p.returncode != 0 and b"not running" in p.stderr
    pyrunc("delete", cid, check=True)
    p = pyrunc("state", cid)
    assert p.returncode != 0 and b"does not exist" in p.stderr
    assert not cgroup_leftovers(cid)


def test_duplicate_id_and_bad_ids(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"already exists" in p.stderr
    for bad in ("a/b", "..", "", "x y"):
        p = pyrunc("create", "--bundle", bundle.path, bad)
        assert p.returncode != 0 and b"invalid container id" in p.stderr, bad
    assert sorted(os.listdir(pyrunc.root)) == [cid]


def test_start_twice_and_unknown(pyrunc, bundle):
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    pyrunc("start", cid, check=True)
    p = pyrunc("start", cid)
    assert p.returncode != 0
    p = pyrunc("start", "nosuchcontainer")
    assert p.returncode != 0 and b"does not exist" in p.stderr


def test_run_exit_status_becomes_ours(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sh", "-c", "echo out; echo err >&2; exit 7"]
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("run", "--bundle", bundle.path, cid)
    assert p.returncode == 7
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_run_killed_by_signal(pyrunc, bundle):
    """pid 1 of a pid namespace can't signal itself to death, so kill it from outside."""
    import subprocess
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    proc = subprocess.Popen([pyrunc.binary, "--root", pyrunc.root, "run", "--bundle",
                             bundle.path, cid], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            p = pyrunc("state", cid)
            if p.returncode == 0 and json.loads(p.stdout)["status"] == "running":
                break
            time.sleep(0.02)
        pyrunc("kill", cid, "9", check=True)
        assert proc.wait(timeout=10) == 128 + 9
    finally:
        proc.kill()
        proc.wait()


def test_run_detach_and_keep(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "--detach", "--bundle", bundle.path, cid, check=True)
    assert pyrunc.state(cid)["status"] == "running"
    pyrunc("delete", "--force", cid, check=True)
    b2 = pyrunc.new_id()
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    pyrunc("run", "--keep", "--bundle", bundle.path, b2, check=True)
    assert pyrunc.state(b2)["status"] == "stopped"


def test_list_formats(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    ids = sorted(pyrunc.new_id() for _ in range(2))
    for cid in ids:
        pyrunc("create", "--bundle", bundle.path, cid, check=True)
    q = pyrunc("list", "-q", check=True).stdout.decode().split()
    assert q == ids
    js = json.loads(pyrunc("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in js] == ids and all(c["status"] == "created" for c in js)
    table = pyrunc("list", check=True).stdout.decode().splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and len(table) == 3


def test_delete_created_container(pyrunc, bundle):
    """runc deletes a created (never started) container without --force."""
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    pid = pyrunc.state(cid)["pid"]
    pyrunc("delete", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/stat") or \
        open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"


def test_kill_signal_by_name_and_number(pyrunc, bundle):
    bundle.config["process"]["args"] = [
        "sh", "-c", "trap 'exit 3' USR1; while :; do sleep 0.05; done"]
    bundle.write()
    for sig in ("USR1", "SIGUSR1", "10"):
        cid = pyrunc.new_id()
        pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
        time.sleep(0.2)
        pyrunc("kill", cid, sig, check=True)
        _wait_status(pyrunc, cid, "stopped")
        pyrunc("delete", cid, check=True)
    p = pyrunc("kill", "x", "NOTASIGNAL")
    assert p.returncode != 0
