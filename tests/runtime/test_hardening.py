"""Where runc had CVEs: leaked fds and cwd (CVE-2024-21626), a dumpable init
(CVE-2019-5736), and symlinked mount targets (CVE-2021-30465, see test_pathsafe.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.rig import PYRUNC


def test_cwd_through_a_passed_host_directory_is_refused(pyrunc, bundle, tmp_path):
    """A host directory reaching the init as fd 3 and cwd=/proc/self/fd/3 must not become
    the process's working directory."""
    hostdir = tmp_path / "host-secret"
    hostdir.mkdir()
    bundle.config["process"]["cwd"] = "/proc/self/fd/3"
    bundle.config["process"]["args"] = ["sh", "-c", "ls"]
    bundle.write()
    cid = pyrunc.new_id()
    p = subprocess.run(["bash", "-c", f'exec 3<"{hostdir}"; exec "$@"', "bash", PYRUNC,
                        "--root", pyrunc.root, "create", "--preserve-fds", "1", "--bundle",
                        bundle.path, cid], capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"process.cwd" in p.stderr and b"outside the container" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_init_is_not_dumpable_until_exec(pyrunc, bundle):
    """Until execve the init is non-dumpable: a same-uid process without CAP_SYS_PTRACE
    can't read its /proc files. After start the program is an ordinary dumpable process,
    which shows the probe can tell the difference."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    # No capabilities: otherwise the kernel's rule that a tracer's permitted set must cover
    # the target's would deny the capless probe regardless of dumpability.
    bundle.config["process"]["capabilities"] = {}
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    pid = pyrunc.state(cid)["pid"]

    def readable() -> bool:
        probe = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "cat",
                                f"/proc/{pid}/environ"], capture_output=True)
        return probe.returncode == 0

    assert not readable(), "the waiting init is dumpable"
    pyrunc("start", cid, check=True)
    deadline = time.monotonic() + 5
    while not readable() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readable(), "after execve the program should be an ordinary process"


def test_no_host_paths_reachable_through_proc_self(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sh", "-c", "ls -l /proc/self/fd/ /proc/self/cwd "
                                        "/proc/self/root; true"]
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id())
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "pyrunc" not in out and bundle.path not in out
