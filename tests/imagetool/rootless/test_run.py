"""Slice 3: `import` and `run --network none` of busybox as an ordinary user, with and without
a subordinate range; files of other owners; resource flags refused; nothing left behind."""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from tests.imagetool.rootless.conftest import SUBRANGE, RootlessUser
from tests.imagetool.storehelp import rootfs_tar

STAT = "stat -c '%n %u:%g' /f1000 /f65534 /d1000; id -u; touch /tmp/x"


def _owned_tar(user: RootlessUser) -> str:
    """busybox plus /f1000 (1000:1000), /f65534 (65534:65534) and /d1000/ (1000:1000)."""
    d = os.path.join(user.home, "img")
    os.makedirs(d, exist_ok=True)
    path = rootfs_tar(d)
    with tarfile.open(path, "a", format=tarfile.PAX_FORMAT) as tf:
        for name, owner, kind in (("f1000", 1000, tarfile.REGTYPE),
                                  ("f65534", 65534, tarfile.REGTYPE),
                                  ("d1000", 1000, tarfile.DIRTYPE)):
            ti = tarfile.TarInfo(f"./{name}")
            ti.type, ti.uid, ti.gid = kind, owner, owner
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            tf.addfile(ti, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    for p in (d, path):
        os.chmod(p, 0o755 if p == d else 0o644)
    return path


def _leftovers(user: RootlessUser, wait: float = 5.0) -> list[str]:
    """Processes of the user, the runtime's state dirs and mounts under the user's home:
    all must be gone (processes get `wait` seconds to finish exiting)."""
    deadline = time.monotonic() + wait
    while True:
        out = _leftovers_now(user)
        if not out or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def _leftovers_now(user: RootlessUser) -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == user.uid:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")[:80]
                out.append(f"pid {pid}: {cmd!r}")
        except OSError:
            continue
    state = os.path.join(user.home, "run", "imagetool", "runtime")
    if os.path.isdir(state):
        out += [f"state {n}" for n in os.listdir(state)]
    with open("/proc/self/mountinfo") as f:
        out += [f"mount {m}" for m in (line.split()[4] for line in f) if user.home in m]
    return out


@pytest.fixture(scope="module")
def imported(subuser):
    r = subuser.imagetool("import", _owned_tar(subuser), "busybox:latest")
    assert r.returncode == 0, r.stderr
    return subuser


def test_run_with_subids_keeps_owners(imported):
    u = imported
    r = u.imagetool("run", "--rm", "--network", "none", "busybox", "sh", "-c", STAT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["/f1000 1000:1000", "/f65534 65534:65534",
                                        "/d1000 1000:1000", "0"]
    assert "warning" not in r.stderr
    # on the host the store holds them as the subordinate ids
    start = SUBRANGE[0]
    snaps = os.path.join(u.home, ".local", "share", "imagetool", "snapshots", "sha256")
    (snap,) = [os.path.join(snaps, n) for n in os.listdir(snaps)]
    st = os.stat(os.path.join(snap, "f65534"))
    assert (st.st_uid, st.st_gid) == (start + 65533, start + 65533)
    assert os.stat(os.path.join(snap, "bin", "busybox")).st_uid == u.uid
    assert _leftovers(u) == []


def test_resource_flags_are_refused(imported):
    u = imported
    r = u.imagetool("run", "--rm", "--network", "none", "--memory", "64m", "busybox", "true")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "--memory" in lines[0] and "cgroup this user can write" in lines[0]
    assert u.imagetool("ps", "-aq").stdout == ""
    assert _leftovers(u) == []


def test_detached_stop_rm(imported):
    u = imported
    r = u.imagetool("run", "-d", "--network", "none", "--name", "rl", "busybox", "sleep", "300")
    try:
        assert r.returncode == 0, r.stderr
        ps = u.imagetool("ps", "--format", "{{.Names}} {{.Status}}")
        assert ps.stdout.startswith("rl Up"), ps.stdout + ps.stderr
        r = u.imagetool("stop", "-t", "2", "rl")
        assert r.returncode == 0, r.stderr
        r = u.imagetool("rm", "rl")
        assert r.returncode == 0, r.stderr
    finally:
        u.imagetool("rm", "-f", "rl")
    assert _leftovers(u) == []


def test_run_without_subids_is_single_id_with_warning(ruser):
    r = ruser.imagetool("import", _owned_tar(ruser), "busybox:latest")
    assert r.returncode == 0, r.stderr
    assert "warning: no subordinate ids for itool-rl-plain in /etc/subuid" in r.stderr
    r = ruser.imagetool("run", "--rm", "--network", "none", "busybox", "sh", "-c", STAT)
    assert r.returncode == 0, r.stderr
    # other owners become the user's (0 inside)
    assert r.stdout.split("\n")[:4] == ["/f1000 0:0", "/f65534 0:0", "/d1000 0:0", "0"]
    assert _leftovers(ruser) == []


def test_host_network(imported):
    u = imported
    r = u.imagetool("run", "--rm", "--network", "host", "busybox", "sh", "-c",
                    "ls /sys/class/net; id -u")
    assert r.returncode == 0, r.stderr
    names = r.stdout.split()
    assert names[-1] == "0"
    assert set(names[:-1]) == set(os.listdir("/sys/class/net"))
    assert _leftovers(u) == []


def test_exit_code_and_output_arrive(imported):
    """The command re-executed in the user namespace ends without the interpreter's teardown
    (entry.exit_now): the container's code and every byte of its output still arrive."""
    u = imported
    r = u.imagetool("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                    "seq 1 20000; echo err >&2; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines()[-1] == "20000" and len(r.stdout.splitlines()) == 20000
    assert r.stderr.strip() == "err"
    r = u.imagetool("images", "--format", "{{.Repository}}")
    assert (r.returncode, r.stdout.strip()) == (0, "busybox"), r.stderr
    assert _leftovers(u) == []


def test_network_none_has_loopback_up(imported):
    """--network none: a network namespace of its own with lo up (the runtime's init brings it
    up; the monitor no longer does it a second time)."""
    u = imported
    r = u.imagetool("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                    "ls /sys/class/net; cat /sys/class/net/lo/flags; "
                    "ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo", "0x9", "ping-ok"]  # IFF_UP | IFF_LOOPBACK
    assert _leftovers(u) == []
