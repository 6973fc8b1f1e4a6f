"""A real-time STOPSIGNAL end to end: `imagetool build` of `STOPSIGNAL SIGRTMIN+3`, `imagetool
run -d`, then `imagetool stop` (and `kill -s RTMIN+3`) must deliver signal 37 to the container,
whose shell traps it and exits 7: not the SIGKILL fallback (137), not an "invalid signal"
that leaves it running. Everything is removed afterwards, also on failure."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time

import pytest

from imagetool.run.records import Records
from tests.imagetool.storehelp import imagetool, remove_containers, rootfs_tar, unmount_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RTMIN3 = 37
# busybox's trap knows no RTMIN+n names: the number
SCRIPT = f"trap 'echo got-{RTMIN3}; exit 7' {RTMIN3}; echo ready; while :; do sleep 0.1; done"


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itstopsig-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        ctx = os.path.join(d, "ctx")
        os.mkdir(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM busybox\nSTOPSIGNAL SIGRTMIN+3\n"
                    f"CMD {json.dumps(['sh', '-c', SCRIPT])}\n")
        imagetool(root, "build", "-t", "rtstop:latest", ctx, timeout=300)
        yield {"dir": d, "root": root}
    finally:
        with contextlib.suppress(Exception):
            remove_containers(root)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def _started(env, it) -> tuple[str, int]:
    """A detached rtstop container whose shell has installed its trap: (id, pid)."""
    cid = it("run", "-d", "--network", "none", "rtstop").stdout.decode().strip()
    rec = Records(env["root"]).load(cid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(rec["LogPath"]) as f:
            if "ready" in f.read():
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the container never said ready")
    pid = Records(env["root"]).load(cid)["State"]["Pid"]
    with open(f"/proc/{pid}/status") as f:
        caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
    assert caught & (1 << (RTMIN3 - 1)), "the shell does not catch signal 37"
    return cid, pid


def _exited(env, cid: str, timeout: float = 20) -> dict:
    recs = Records(env["root"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = recs.load(cid)
        if rec["State"]["Status"] == "exited" and rec["State"].get("Pid") == 0:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"{cid} did not exit")


def test_built_image_records_the_stop_signal(env, it):
    conf = json.loads(it("inspect", "rtstop").stdout)
    conf = conf[0] if isinstance(conf, list) else conf
    assert "SIGRTMIN+3" in json.dumps(conf)


def test_stop_sends_the_realtime_stop_signal(env, it):
    cid, _ = _started(env, it)
    t0 = time.monotonic()
    p = it("stop", "-t", "30", cid, check=False)
    took = time.monotonic() - t0
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()
    rec = _exited(env, cid)
    assert rec["State"]["ExitCode"] == 7, rec["State"]  # the trap ran, not SIGKILL's 137
    assert took < 25, f"stop waited {took:.1f}s: the stop signal did not end it"
    assert f"got-{RTMIN3}" in it("logs", cid).stdout.decode()


@pytest.mark.parametrize("sig", ["RTMIN+3", "sigrtmin+3", "SIGRTMAX-27", "37"])
def test_kill_takes_realtime_names(env, it, sig):
    cid, _ = _started(env, it)
    it("kill", "-s", sig, cid)
    assert _exited(env, cid)["State"]["ExitCode"] == 7


def test_kill_refuses_a_bad_signal_and_leaves_it_running(env, it):
    cid, pid = _started(env, it)
    for bad in ("0", "RTMIN+31", "NOPE"):
        p = it("kill", "-s", bad, cid, check=False)
        assert p.returncode != 0 and b"invalid signal" in p.stderr, (bad, p.stderr)
        assert b"Traceback" not in p.stderr
    assert os.path.exists(f"/proc/{pid}")
    assert Records(env["root"]).load(cid)["State"]["Status"] == "running"
