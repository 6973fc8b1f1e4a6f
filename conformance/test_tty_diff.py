"""Terminals, runc and pyrunc side by side (the cases of runc's tty.bats): who owns the pty
a container or an `exec --tty` gets, and process.consoleSize. Each runtime sends its pty
master to our own --console-socket receiver (conformance/console_recv.py), which collects
what the container printed on it.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import Any

import pytest

from conformance.console_recv import ConsoleReceiver
from conformance.pair import NAMES, Pair

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

OWNER = "stat -c '%u %g %a' $(tty)"


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="conf-tty-")
    yield d
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    os.rmdir(d)


def _terminal(cfg: dict[str, Any], script: str, uid: int = 0, gid: int = 0,
              pts_options: list[str] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    out["process"]["terminal"] = True
    out["process"]["args"] = ["sh", "-c", script]
    out["process"]["user"] = {"uid": uid, "gid": gid}
    if pts_options is not None:
        for m in out["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"] = pts_options
    return out


def _run_tty(pair: Pair, name: str, cfg: dict[str, Any], sockdir: str) -> tuple[int, str, str]:
    """`run -d --console-socket`; (rc, what the terminal showed, stderr)."""
    path = os.path.join(sockdir, f"{name}-run.sock")
    rt = pair.rt[name]
    b = pair.bundle(name, cfg)
    cid = rt.new_id("conf")
    with ConsoleReceiver(path) as rx:
        p = rt("run", "-d", "--console-socket", path, "--bundle", b.path, cid)
        if p.returncode != 0:
            return p.returncode, "", p.stderr.decode()
        shown = rx.output()
    pair.wait_status(name, cid, "stopped")
    rt("delete", cid)
    return 0, shown, p.stderr.decode()


def _exec_tty(pair: Pair, name: str, cid: str, sockdir: str, tag: str,
              process: dict[str, Any]) -> tuple[int, str, str]:
    """`exec --tty -d --console-socket --process FILE`; (rc, terminal output, stderr)."""
    path = os.path.join(sockdir, f"{name}-{tag}.sock")
    pfile = os.path.join(sockdir, f"{name}-{tag}.json")
    with open(pfile, "w") as f:
        json.dump(process, f)
    with ConsoleReceiver(path) as rx:
        p = pair.rt[name]("exec", "--tty", "-d", "--console-socket", path, "--process", pfile,
                          cid)
        shown = rx.output() if p.returncode == 0 else ""
    os.unlink(pfile)
    return p.returncode, shown, p.stderr.decode()


@pytest.mark.parametrize("uid,gid,pts,want", [
    (0, 0, None, "0 5 620"),
    (1000, 100, None, "1000 5 620"),
    (1000, 100, ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
     "1000 0 620"),
], ids=["root", "uid1000-gid100", "devpts-without-gid"])
def test_run_tty_owner(pair, config, sockdir, uid, gid, pts, want):
    cfg = _terminal(config, OWNER, uid, gid, pts)
    seen = {name: _run_tty(pair, name, cfg, sockdir) for name in NAMES}
    assert seen["runc"][:2] == (0, want + "\n"), seen["runc"]
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]


@pytest.mark.parametrize("uid,gid,want", [(0, 0, "0 5 620"), (1000, 100, "1000 5 620")],
                         ids=["root", "uid1000-gid100"])
def test_exec_tty_owner(pair, config, sockdir, uid, gid, want):
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "600"]
    cfg["process"]["user"] = {"uid": uid, "gid": gid}
    seen = {}
    for name in NAMES:
        cid, _pid = pair.start_detached(name, cfg)
        proc = dict(copy.deepcopy(cfg["process"]), terminal=True, args=["sh", "-c", OWNER])
        seen[name] = _exec_tty(pair, name, cid, sockdir, "owner", proc)[:2]
        pair.rt[name]("kill", cid, "KILL")
    assert seen["runc"] == (0, want + "\n"), seen["runc"]
    assert seen["pyrunc"] == seen["runc"]


def test_exec_console_size(pair, config, sockdir):
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "600"]
    seen = {}
    for name in NAMES:
        cid, _pid = pair.start_detached(name, cfg)
        proc = {"terminal": True, "consoleSize": {"height": 10, "width": 110},
                "args": ["/bin/stty", "size"], "cwd": "/", "env": ["PATH=/bin"]}
        seen[name] = _exec_tty(pair, name, cid, sockdir, "size", proc)[:2]
        pair.rt[name]("kill", cid, "KILL")
    assert seen["runc"] == (0, "10 110\n"), seen["runc"]
    assert seen["pyrunc"] == seen["runc"]


def test_run_console_size(pair, config, sockdir):
    cfg = _terminal(config, "stty size")
    cfg["process"]["consoleSize"] = {"height": 33, "width": 77}
    seen = {name: _run_tty(pair, name, cfg, sockdir) for name in NAMES}
    assert seen["runc"][:2] == (0, "33 77\n"), seen["runc"]
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]


def test_run_terminal_with_read_only_dev(pair, config, sockdir):
    """mounts.bats "[ro /dev mount]" runs with process.terminal (its spec's default): the
    console is bound over /dev/console although /dev ends up read-only."""
    cfg = _terminal(config, "grep '^tmpfs /dev ' /proc/mounts; ls -l /dev/console")
    for m in cfg["mounts"]:
        if m["destination"] == "/dev":
            m["options"] = list(m.get("options") or []) + ["ro"]
    seen = {name: _run_tty(pair, name, cfg, sockdir) for name in NAMES}
    for name in NAMES:
        rc, shown, err = seen[name]
        assert rc == 0, (name, err)
        lines = shown.replace("\r", "").splitlines()
        assert lines and " ro," in lines[0], (name, shown)
        assert any(line.endswith("/dev/console") and line.startswith("c") for line in lines), \
            (name, shown)
