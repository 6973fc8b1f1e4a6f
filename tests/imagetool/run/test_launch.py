"""imagetool.run.launch as a library: one call creates and starts a container (the spec
written once), a failed start and a Ctrl-C during the start leave nothing behind (record,
runtime container, bundle mount, monitor). Real containers in a private store, driven from
child interpreters (the monitor is forked from its caller); everything cleaned up on
failure too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from tests.imagetool.storehelp import imagetool, remove_containers, rootfs_tar, unmount_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itla-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        try:
            yield {"dir": d, "root": root}
        finally:
            remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def _script(env: dict, name: str, body: str) -> subprocess.CompletedProcess:
    """Run `body` in a child interpreter with `store`, `launch`, `lifecycle` and an
    Options maker `opts(cmd)` at hand; the script's path marks its monitors in /proc."""
    path = os.path.join(env["dir"], name)
    with open(path, "w") as f:
        f.write(textwrap.dedent("""\
            import json, os, sys
            sys.path.insert(0, sys.argv[1])
            from imagetool.store import Store
            from imagetool.run import launch, lifecycle
            store = Store(sys.argv[2])

            def opts(cmd, **host):
                return launch.Options({"Cmd": cmd}, dict({"NetworkMode": "none"}, **host))
            """) + textwrap.dedent(body))
    try:
        return subprocess.run([sys.executable, path, REPO, env["root"]], capture_output=True,
                              text=True, timeout=60)
    finally:
        _kill_monitors(path)


def _monitors(path: str) -> list[int]:
    """Processes (the script or a monitor forked from it) running the script `path`."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if path.encode() in f.read():
                        out.append(int(p))
            except OSError:
                pass
    return out


def _kill_monitors(path: str) -> None:
    for pid in _monitors(path):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _leftovers(env: dict) -> dict:
    from imagetool.run.records import Records
    recs = Records(env["root"])
    try:
        runtime = os.listdir(recs.runtime_root)
    except FileNotFoundError:
        runtime = []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if env["dir"] in line]
    return {"records": recs.ids(), "runtime": runtime, "mounts": mounts}


NOTHING = {"records": [], "runtime": [], "mounts": []}


def test_launch_runs_and_reports_the_exit(env):
    r = _script(env, "ok.py", """\
        c = launch.launch(store, "busybox", opts(["sh", "-c", "exit 7"]), foreground=False,
                          interactive=False)
        spec = json.load(open(c.records.path(c.id, "bundle", "config.json")))
        rest = c.rest
        while b"\\n" not in rest:
            rest += os.read(c.status_fd, 4096)
        print(json.dumps({"id": c.id, "args": spec["process"]["args"],
                          "exit": json.loads(rest.split(b"\\n")[0])}))
        """)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["args"] == ["sh", "-c", "exit 7"]
    assert got["exit"] == {"exit": 7}
    rec = imagetool(env["root"], "inspect", got["id"]).stdout
    assert json.loads(rec)[0]["State"]["ExitCode"] == 7
    imagetool(env["root"], "rm", got["id"])
    assert _leftovers(env) == NOTHING


def test_a_failed_start_leaves_nothing(env):
    r = _script(env, "bad.py", """\
        try:
            launch.launch(store, "busybox", opts(["/no/such/program"]), foreground=False,
                          interactive=False)
        except lifecycle.StartError as e:
            print(e.code)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "127"
    assert _leftovers(env) == NOTHING


def test_refusals_before_anything_is_made(env):
    r = _script(env, "refuse.py", """\
        from imagetool.run.records import ContainerError
        for ref, o in (("busybox", opts(["true"], PortBindings=[
                           {"HostIp": "0.0.0.0", "HostPort": 0, "ContainerPort": 80,
                            "Proto": "tcp"}])),
                       ("busybox", launch.Options({"Cmd": None}, {"NetworkMode": "none"})),
                       ("127.0.0.1:9/nope:1", opts(["true"]))):
            try:
                launch.create(store, ref, o, on_pull=lambda r: print("pull", r))
            except Exception as e:
                print(type(e).__name__, e)
        """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ContainerError -p needs --network bridge (or a user network)"
    assert lines[1].startswith("NoCommand no command specified")
    # a missing image is pulled (told first), and that failure is the error
    assert lines[2] == "pull 127.0.0.1:9/nope:1"
    assert len(lines) == 4 and "127.0.0.1:9" in lines[3]
    assert _leftovers(env) == NOTHING


def test_ctrl_c_while_starting_stops_and_removes_it(env):
    """A KeyboardInterrupt where ^C lands (waiting for the monitor's first word): the
    container, which goes on starting meanwhile, is killed and removed with all it had."""
    t0 = time.monotonic()
    r = _script(env, "intr.py", """\
        real = lifecycle.read_status
        calls = []

        def interrupted(fd):
            calls.append(fd)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real(fd)
        lifecycle.read_status = interrupted
        try:
            launch.launch(store, "busybox", opts(["sleep", "60"]), foreground=False,
                          interactive=False)
        except KeyboardInterrupt:
            print("interrupted", len(calls))
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "interrupted 2"
    assert time.monotonic() - t0 < 30   # killed, not waited for
    deadline = time.monotonic() + 10
    while _leftovers(env) != NOTHING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(env) == NOTHING
    assert _monitors(os.path.join(env["dir"], "intr.py")) == []
