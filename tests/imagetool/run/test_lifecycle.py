"""The lifecycle verbs after run: --restart policies (the monitor restarts), restart, wait,
pause/unpause, rename, top, stats, port, attach, container prune and the command groups
(`container ls`, `image ls`). Real containers in a private store; cleaned up on failure."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

from imagetool.run.records import Records
from tests.imagetool.conftest import free_port
from tests.imagetool.run.test_run import _wait_exited
from tests.imagetool.storehelp import (
    IMAGETOOL,
    imagetool,
    private_network,
    remove_containers,
    rootfs_tar,
    unmount_under,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itlc-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with private_network(root, "itl", 93) as bridge:
            try:
                yield {"dir": d, "root": root, "bridge": bridge}
            finally:
                remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def _fmt(it, template: str, name: str) -> str:
    return it("inspect", "-f", template, name).stdout.decode().strip()


def _until(pred, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_restart_on_failure_counts_and_gives_up(env, it):
    it("run", "-d", "--name", "rf", "--restart", "on-failure:2", "--network", "none",
       "busybox", "sh", "-c", "echo run; exit 3")
    # wait returns once the monitor is done: after the last restart
    assert it("wait", "rf", timeout=60).stdout == b"3\n"
    assert _fmt(it, "{{.RestartCount}}", "rf") == "2"
    assert it("logs", "rf").stdout == b"run\nrun\nrun\n"  # the first run and 2 restarts
    assert _fmt(it, "{{.State.Status}} {{.State.ExitCode}}", "rf") == "exited 3"
    it("run", "-d", "--name", "ok", "--restart", "on-failure", "--network", "none",
       "busybox", "true")
    assert it("wait", "ok").stdout == b"0\n"
    assert _fmt(it, "{{.RestartCount}}", "ok") == "0"  # exit 0 is not a failure


def test_restart_always_until_stopped(env, it):
    it("run", "-d", "--name", "al", "--restart", "always", "--network", "none", "busybox",
       "sh", "-c", "sleep 0.2; exit 1")
    _until(lambda: int(_fmt(it, "{{.RestartCount}}", "al")) >= 2)
    it("stop", "-t", "1", "al")
    n = _fmt(it, "{{.RestartCount}}", "al")
    time.sleep(1.0)
    assert _fmt(it, "{{.RestartCount}} {{.State.Status}}", "al") == f"{n} exited"
    assert it("ps", "-q").stdout == b""


def test_restart_policy_refusals(env, it):
    for bad, text in ((["--restart", "sometimes"], "--restart sometimes"),
                      (["--restart", "always:3"], "only on-failure"),
                      (["--restart", "always", "--rm"], "--restart and --rm")):
        p = imagetool(env["root"], "run", *bad, "--network", "none", "busybox", "true",
                      check=False)
        assert p.returncode == 125 and text in p.stderr.decode(), p.stderr.decode()
    assert Records(env["root"]).ids() == []


def test_restart_wait_pause_unpause_rename(env, it):
    it("run", "-d", "--name", "life", "--network", "none", "busybox", "sleep", "60")
    first = _fmt(it, "{{.State.StartedAt}}", "life")
    assert it("pause", "life").stdout == b"life\n"
    assert "(Paused)" in it("ps", "--format", "{{.Status}}").stdout.decode()
    assert _fmt(it, "{{.State.Status}}", "life") == "paused"
    p = imagetool(env["root"], "exec", "life", "true", check=False)
    assert p.returncode == 125 and "paused" in p.stderr.decode()
    assert imagetool(env["root"], "pause", "life", check=False).returncode == 1
    assert it("unpause", "life").stdout == b"life\n"
    assert it("exec", "life", "echo", "back").stdout == b"back\n"
    it("rename", "life", "life2")
    assert it("ps", "--format", "{{.Names}}").stdout == b"life2\n"
    it("run", "-d", "--name", "other", "--network", "none", "busybox", "sleep", "60")
    p = imagetool(env["root"], "rename", "other", "life2", check=False)
    assert p.returncode == 1 and "already in use" in p.stderr.decode()
    assert it("restart", "-t", "1", "life2").stdout == b"life2\n"
    assert _fmt(it, "{{.State.Status}}", "life2") == "running"
    assert _fmt(it, "{{.State.StartedAt}}", "life2") != first
    waiter = subprocess.Popen([IMAGETOOL, "--root", env["root"], "wait", "life2"],
                              stdout=subprocess.PIPE)
    try:
        time.sleep(0.3)
        assert waiter.poll() is None
        it("kill", "-s", "KILL", "life2")  # sleep as pid 1 has no TERM handler
        out, _ = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert out == b"137\n"


def test_top_stats_attach(env, it):
    cid = it("run", "-d", "--name", "tp", "--network", "none", "busybox", "sh", "-c",
             "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; "
             "exit 6").stdout.decode().strip()
    top = it("top", "tp").stdout.decode().splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any("sh -c" in line for line in top[1:]) and all(
        "imagetool" not in line for line in top[1:])
    [row] = [json.loads(x) for x in it("stats", "--no-stream", "--format", "json",
                                       "tp").stdout.splitlines()]
    assert row["Name"] == "tp" and int(row["PIDs"]) >= 1 and "/" in row["MemUsage"]
    assert re.fullmatch(r"\d+\.\d\d%", row["CPUPerc"])
    p = imagetool(env["root"], "attach", "tp", check=False, timeout=60)
    assert p.returncode == 6 and b"tick 29\n" in p.stdout
    _wait_exited(env["root"], cid)
    p = imagetool(env["root"], "attach", "tp", check=False)
    assert p.returncode == 1 and "stopped container" in p.stderr.decode()


def test_port_and_groups(env, it):
    port = free_port()
    it("run", "-d", "--name", "pp", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    assert it("port", "pp").stdout.decode() == f"80/tcp -> 127.0.0.1:{port}\n"
    assert it("port", "pp", "80").stdout.decode() == f"127.0.0.1:{port}\n"
    p = imagetool(env["root"], "port", "pp", "81", check=False)
    assert p.returncode == 1 and "no public port '81/tcp'" in p.stderr.decode()
    assert it("container", "ls", "--format", "{{.Names}}").stdout == b"pp\n"
    assert it("image", "ls", "-q") .stdout == it("images", "-q").stdout
    p = imagetool(env["root"], "container", "frob", check=False)
    assert p.returncode == 2 and "container has:" in p.stderr.decode()


def test_container_prune(env, it):
    it("run", "--name", "done1", "--network", "none", "busybox", "true")
    it("create", "--name", "made1", "--network", "none", "busybox", "true")
    it("run", "-d", "--name", "live1", "--network", "none", "busybox", "sleep", "60")
    out = it("container", "prune", "-f").stdout.decode()
    assert out.startswith("Deleted Containers:\n") and out.count("\n") >= 4
    assert it("ps", "-a", "--format", "{{.Names}}").stdout == b"live1\n"


def test_a_stopped_container_keeps_its_changes(env, it):
    """As docker: what a container wrote is there again when it starts again (its overlay's
    upper directory is kept while the container exists), diff and commit see it after it
    exited, and rm takes it away."""
    it("run", "--name", "keep", "--network", "none", "busybox", "sh", "-c",
       "echo run >> /count; rm -f /bin/vi")
    assert it("diff", "keep").stdout.decode().splitlines() == ["C /bin", "D /bin/vi",
                                                                "A /count"]
    assert imagetool(env["root"], "start", "-a", "keep", check=False).returncode == 0
    it("restart", "keep")
    assert it("wait", "keep").stdout == b"0\n"
    # cp both ways and export work on the exited container too
    out = os.path.join(env["dir"], "count.out")
    it("cp", "keep:/count", out)
    with open(out) as f:
        assert f.read() == "run\nrun\nrun\n"
    with open(out, "w") as f:
        f.write("from the host\n")
    it("cp", out, "keep:/fromhost")
    tar = subprocess.run([IMAGETOOL, "--root", env["root"], "export", "keep"],
                         capture_output=True, timeout=60, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert {"count", "fromhost", "bin/busybox"} <= set(tf.getnames())
        assert "bin/vi" not in tf.getnames()
    assert not os.path.ismount(Records(env["root"]).path(
        Records(env["root"]).resolve("keep"), "view"))
    iid = it("commit", "keep", "kept:1").stdout.decode().strip()
    assert it("run", "--rm", "--network", "none", "kept:1", "cat", "/count",
              "/fromhost").stdout == b"run\nrun\nrun\nfrom the host\n"
    cdir = Records(env["root"]).path(Records(env["root"]).resolve("keep"))
    assert os.path.isdir(os.path.join(cdir, "upper"))
    it("rm", "keep")
    assert not os.path.exists(cdir)
    it("rmi", iid[7:19])
