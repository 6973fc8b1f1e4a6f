"""The README's main story as an ordinary user, with a subordinate range and without one (the
single-id fallback and its warning): import a base, build examples/app, `run -d -p
127.0.0.1:PORT:80` (slirp4netns, the rootless default network), fetch the page, ps, port,
exec, logs, stop, rm, push to and pull from a local registry; nothing left (slirp4netns
included).

slirp4netns needs /dev/net/tun open to the user; hosts differ (Debian: 0666, this one: 0600),
so both tests run the user's commands in a private mount namespace of the test's own whose
/dev/net/tun is a node the test made (tunns.py): 0666 for the story, 0600 for the refusal.
The host's node is never touched."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import urllib.request

import pytest

from tests.imagetool.conftest import free_port
from tests.imagetool.rootless.conftest import REPO, RootlessUser, _kill_users_processes
from tests.imagetool.rootless.test_run import _leftovers
from tests.imagetool.rootless.tunns import (
    TUN,
    host_has_tun,
    mounts_under,
    tun_mounted,
    tun_namespace,
)
from tests.imagetool.storehelp import rootfs_tar

pytestmark = pytest.mark.skipif(shutil.which("slirp4netns") is None,
                                reason="needs slirp4netns (Debian package slirp4netns)")
WARNING = "warning: no subordinate ids for"


def _get(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _base(u: RootlessUser, name: str) -> str:
    d = os.path.join(u.home, name)
    os.makedirs(d)
    base = rootfs_tar(d)
    os.chmod(d, 0o755)
    os.chmod(base, 0o644)
    return base


def _procs(uid: int, comm: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    out.append(int(pid))
        except OSError:
            continue
    return out


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_default_network_without_tun_is_a_clear_refusal(subuser):
    """In a mount namespace whose /dev/net/tun is root's 0600 node (or on a host with none)."""
    ctx = tun_namespace(0o600) if host_has_tun() else contextlib.nullcontext()
    with ctx as ns:
        u = dataclasses.replace(subuser, prefix=ns.prefix) if ns else subuser
        try:
            assert u.imagetool("import", _base(u, "tun"), "busybox:latest").returncode == 0
            r = u.imagetool("run", "--rm", "busybox", "true")
            assert r.returncode == 125, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1, r.stderr
            assert f"slirp4netns needs {TUN} readable and writable by this user" in lines[0]
            assert "--network none" in lines[0]
            assert u.imagetool("ps", "-aq").stdout == ""
            assert _leftovers(u) == []
            if ns:
                assert mounts_under(ns.holder, u.home) == []
        finally:
            _kill_users_processes(u.name)


@pytest.fixture(params=["subids", "single-id"])
def story_user(request):
    """(user whose commands run in the 0666-tun namespace, the namespace)."""
    u = request.getfixturevalue("subuser" if request.param == "subids" else "ruser")
    with tun_namespace(0o666) as ns:
        try:
            yield dataclasses.replace(u, prefix=ns.prefix), ns
        finally:
            _kill_users_processes(u.name)


def _check_monitor_and_slirp(u: RootlessUser, cid: str, ns) -> None:
    """The monitor and its slirp4netns descend from the test's mount namespace (its tun
    mount is theirs), and slirp4netns listens from the host's network namespace."""
    with open(os.path.join(u.home, ".local", "share", "imagetool", "containers", cid,
                           "container.json")) as f:
        monitor = json.load(f)["State"]["MonitorPid"]
    slirps = [p for p in _procs(u.uid, "slirp4netns") if _ppid(p) == monitor]
    assert len(slirps) == 1, (monitor, _procs(u.uid, "slirp4netns"))
    for pid in (monitor, slirps[0]):
        assert tun_mounted(pid), f"pid {pid} is not in the test's mount namespace"
        assert _ns(pid, "mnt") != _ns("self", "mnt")
    assert not tun_mounted(os.getpid())
    assert _ns(slirps[0], "net") == _ns("self", "net")


def test_main_story_rootless(story_user, registry):
    u, ns = story_user
    r = u.imagetool("import", _base(u, "story"), "busybox:latest")
    assert r.returncode == 0, r.stderr
    assert (WARNING in r.stderr) == (not u.subids), r.stderr
    r = u.imagetool("build", "-q", "-t", "app:latest", os.path.join(REPO, "examples", "app"))
    assert r.returncode == 0, r.stderr
    port = free_port()
    r = u.imagetool("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "app:latest")
    try:
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        page = _get(f"http://127.0.0.1:{port}/", time.monotonic() + 15)
        assert "hello from imagetool build" in page
        _check_monitor_and_slirp(u, cid, ns)
        r = u.imagetool("ps", "--format", "{{.Names}} {{.Status}} {{.Ports}}")
        assert r.stdout.startswith("web Up"), r.stdout + r.stderr
        r = u.imagetool("port", "web")
        assert f"127.0.0.1:{port}" in r.stdout, r.stdout + r.stderr
        r = u.imagetool("exec", "web", "cat", "/srv/www/health.txt")
        assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
        r = u.imagetool("exec", "web", "sh", "-c", "ip -4 addr show tap0 | grep -o 'inet [0-9.]*'")
        assert r.stdout.strip() == "inet 10.0.2.100", r.stdout + r.stderr
        r = u.imagetool("logs", "web")
        assert r.returncode == 0, r.stderr
        r = u.imagetool("stop", "-t", "2", "web")
        assert r.returncode == 0, r.stderr
        r = u.imagetool("ps", "-a", "--format", "{{.Names}} {{.Status}}")
        assert r.stdout.startswith("web Exited"), r.stdout + r.stderr
        r = u.imagetool("rm", "web")
        assert r.returncode == 0, r.stderr
    finally:
        u.imagetool("rm", "-f", "web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert _procs(u.uid, "slirp4netns") == []

    reg = registry("plain")
    ref = reg.ref(f"rl/app:{'sub' if u.subids else 'single'}")
    layers = u.imagetool("inspect", "--format", "{{json .RootFS.Layers}}", "app:latest")
    assert layers.returncode == 0 and layers.stdout.startswith("["), layers.stderr
    r = u.imagetool("push", "-q", "app:latest", ref)
    assert r.returncode == 0, r.stderr
    assert u.imagetool("rmi", "app:latest").returncode == 0
    r = u.imagetool("pull", "-q", ref)
    assert r.returncode == 0, r.stderr
    again = u.imagetool("inspect", "--format", "{{json .RootFS.Layers}}", ref)
    assert again.stdout == layers.stdout, again.stderr
    r = u.imagetool("run", "--rm", "--network", "none", ref, "cat", "/srv/www/health.txt")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    assert _leftovers(u) == []
    assert mounts_under(ns.holder, u.home) == []


def test_run_rm_on_the_default_network_leaves_nothing(story_user):
    """Without published ports the monitor does not wait for slirp4netns's last ~20 ms of
    exit (slirp.Slirp.close): it must still be gone right after, and the run's output and
    code are the container's."""
    u, ns = story_user
    r = u.imagetool("import", _base(u, "rm"), "busybox:latest")
    assert r.returncode == 0, r.stderr
    for _ in range(3):
        r = u.imagetool("run", "--rm", "busybox", "sh", "-c",
                        "ip -4 addr show tap0 | grep -o 'inet [0-9.]*'; exit 7")
        assert (r.returncode, r.stdout.strip()) == (7, "inet 10.0.2.100"), r.stderr
    assert u.imagetool("ps", "-aq").stdout == ""
    assert _leftovers(u) == []
    assert mounts_under(ns.holder, u.home) == []
