"""Exit codes, the state JSON through create/start/exit, and lifecycle errors: runc's
answers are the reference, pyrunc's must match."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from typing import Any

import pytest

from conformance.pair import NAMES, popen_run

pytestmark = pytest.mark.peer

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")  # Go trims zeros


def _args(config: dict[str, Any], *args: str) -> dict[str, Any]:
    config["process"]["args"] = list(args)
    return config


@pytest.mark.parametrize("args,want", [
    (["true"], 0),
    (["sh", "-c", "exit 3"], 3),
    (["sh", "-c", "exit 255"], 255),
    (["sh", "-c", "sleep 30 & kill -TERM $!; wait $!"], 143),
], ids=["exit0", "exit3", "exit255", "child-killed"])
def test_run_exit_code(pair, config, args, want):
    outs = pair.run_both(_args(config, *args))
    got = {n: o.rc for n, o in outs.items()}
    assert got == {"runc": want, "pyrunc": want}, {n: o.stderr for n, o in outs.items()}


def test_kill_9_from_outside_gives_137(pair, config):
    """`run` of a sleeping container, SIGKILLed through each runtime's own `kill`."""
    _args(config, "sleep", "60")
    codes = {}
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, config)
        cid = rt.new_id("kill")
        with tempfile.TemporaryFile() as out:
            proc = popen_run(rt, b.path, cid, out)
            try:
                _wait_running(pair, name, cid)
                rt("kill", cid, "KILL", check=True)
                codes[name] = proc.wait(timeout=20)
            finally:
                if proc.poll() is None:
                    rt("delete", "--force", cid)
                    proc.wait(timeout=20)
        assert not os.path.exists(os.path.join(rt.root, cid)), f"{name}: run left state"
    assert codes == {"runc": 137, "pyrunc": 137}


def _wait_running(pair, name: str, cid: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = pair.rt[name]("state", cid)
        if p.returncode == 0 and b'"running"' in p.stdout:
            return
        time.sleep(0.02)
    raise AssertionError(f"{name}: {cid} never ran")


def test_missing_executable_create_fails(pair, config):
    for args in (["/bin/nope"], ["nope"]):
        for name in NAMES:
            rt = pair.rt[name]
            b = pair.bundle(name, _args(config, *args))
            cid = rt.new_id("noexe")
            assert rt("create", "--bundle", b.path, cid).returncode != 0, (name, args)
            assert not os.path.exists(os.path.join(rt.root, cid)), (name, args)
            assert rt("run", "--bundle", b.path, rt.new_id("noexe")).returncode != 0


def _shape(st: dict[str, Any], cid: str, pid: int, bundle: str, rootfs: str) -> dict[str, Any]:
    """The state with run-specific values checked and replaced by what they mean."""
    out = dict(st)
    assert out.pop("id") == cid
    assert out.pop("bundle") == bundle
    assert os.path.realpath(out.pop("rootfs")) == os.path.realpath(rootfs)
    assert RFC3339_NANO.match(out.pop("created")), st
    assert isinstance(out.pop("ociVersion"), str)
    out["pid"] = "init" if st["pid"] == pid else st["pid"]
    return out


def _lifecycle(pair, name: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """create -> start -> exit, with the state JSON seen at each step."""
    rt = pair.rt[name]
    b = pair.bundle(name, config)
    cid = rt.new_id("life")
    pidfile = os.path.join(b.path, "pidfile")
    rt("create", "--bundle", b.path, "--pid-file", pidfile, cid, check=True)
    with open(pidfile) as f:
        pid = int(f.read())
    seen = [rt.state(cid)]
    rt("start", cid, check=True)
    seen.append(rt.state(cid))
    # the process waits for a line on a fifo we hold, so "running" is observed for sure
    with open(os.path.join(b.rootfs, "tmp/go"), "w") as f:
        f.write("go\n")
    pair.wait_status(name, cid, "stopped")
    seen.append(rt.state(cid))
    rt("delete", cid, check=True)
    seen.append({"after_delete_rc": rt("state", cid).returncode != 0})
    return [_shape(s, cid, pid, b.path, b.rootfs) if "id" in s else s for s in seen]


@pytest.mark.parametrize("annotations", [None, {"org.example.a": "1", "b": "two"}],
                         ids=["plain", "annotated"])
def test_state_json_through_lifecycle(pair, config, annotations):
    config["root"]["readonly"] = False
    _args(config, "sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done")
    if annotations:
        config["annotations"] = annotations
    got = {name: _lifecycle(pair, name, config) for name in NAMES}
    assert [s.get("status") for s in got["runc"]] == ["created", "running", "stopped", None]
    assert got["pyrunc"] == got["runc"], f"runc: {got['runc']}\npyrunc: {got['pyrunc']}"


def test_lifecycle_errors_agree(pair, config):
    """What each runtime refuses on a live, a stopped and an unknown container."""
    _args(config, "sleep", "60")
    verdicts = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        v = {
            "start_running": rt("start", cid).returncode != 0,
            "delete_running": rt("delete", cid).returncode != 0,
            "create_duplicate": rt("create", "--bundle", pair.bundle(name, config).path,
                                   cid).returncode != 0,
            "state_unknown": rt("state", "nosuch").returncode != 0,
            "kill_unknown": rt("kill", "nosuch", "KILL").returncode != 0,
            "delete_unknown": rt("delete", "nosuch").returncode != 0,
            "delete_force_unknown": rt("delete", "--force", "nosuch").returncode != 0,
        }
        rt("kill", cid, "KILL", check=True)
        pair.wait_status(name, cid, "stopped")
        v["kill_stopped"] = rt("kill", cid, "KILL").returncode != 0
        v["start_stopped"] = rt("start", cid).returncode != 0
        v["delete_stopped"] = rt("delete", cid).returncode != 0
        v["state_deleted"] = rt("state", cid).returncode != 0
        verdicts[name] = v
    assert verdicts["pyrunc"] == verdicts["runc"]


def test_list_json_agrees(pair, config):
    """`list --format json` shows the same fields and statuses."""
    _args(config, "sleep", "60")
    shapes = {}
    for name in NAMES:
        cid, _ = pair.start_detached(name, config)
        p = pair.rt[name]("list", "--format", "json", check=True)
        items = json.loads(p.stdout)
        assert [i["id"] for i in items] == [cid]
        shapes[name] = (sorted(items[0]), items[0]["status"])
    assert shapes["pyrunc"] == shapes["runc"]


def test_pidfile_and_state_pid_match_proc(pair, config):
    """The pid both report is the container's init in the host pid namespace."""
    _args(config, "sleep", "60")
    for name in NAMES:
        cid, pid = pair.start_detached(name, config)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"sleep", name
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid"), name


EXEC_PROBE = "grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs)' /proc/self/status; pwd; umask; id -u"




@pytest.mark.parametrize("how", ["flags", "process_json",
                                 "process_json_bare"])
def test_exec_sees_the_same(pair, config, how, tmp_path):
    """`exec` into a running container: ids, capabilities, cwd, umask as runc gives them.
    process_json_bare leaves out capabilities, user and noNewPrivileges."""
    _args(config, "sleep", "60")
    config["process"]["user"]["umask"] = 0o027
    seen = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        if how == "flags":
            p = rt("exec", "--user", "1000:1000", "--cwd", "/tmp", cid, "sh", "-c", EXEC_PROBE)
        else:
            proc = {"args": ["sh", "-c", EXEC_PROBE], "cwd": "/tmp",
                    "env": ["PATH=/bin:/usr/bin"]}
            if how == "process_json":
                proc.update(user={"uid": 1000, "gid": 1000, "additionalGids": [5]},
                            capabilities=config["process"]["capabilities"],
                            noNewPrivileges=True)
            path = tmp_path / f"{name}-process.json"
            path.write_text(json.dumps(proc))
            p = rt("exec", "--process", str(path), cid)
        seen[name] = (p.returncode, p.stdout.decode().splitlines())
    assert seen["runc"][0] == 0, seen
    assert seen["pyrunc"] == seen["runc"]
