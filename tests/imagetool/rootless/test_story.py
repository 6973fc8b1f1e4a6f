"""The README's main story as an ordinary user with a subordinate range: import a base,
build examples/app, `run -d -p 127.0.0.1:PORT:80` (slirp4netns, the rootless default
network), fetch the page, exec, logs, stop, rm; nothing left (slirp4netns included)."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request

import pytest

from tests.imagetool.conftest import free_port
from tests.imagetool.rootless.conftest import REPO
from tests.imagetool.rootless.test_run import _leftovers
from tests.imagetool.storehelp import rootfs_tar

pytestmark = pytest.mark.skipif(shutil.which("slirp4netns") is None,
                                reason="needs slirp4netns (Debian package slirp4netns)")


def _get(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


TUN = "/dev/net/tun"


def _tun_open_to_all() -> bool:
    try:
        return os.stat(TUN).st_mode & 0o006 == 0o006
    except OSError:
        return False


def test_default_network_without_tun_is_a_clear_refusal(subuser):
    if _tun_open_to_all():
        pytest.skip(f"{TUN} is open to every user here: the story test covers this")
    u = subuser
    base = os.path.join(u.home, "tun")
    os.makedirs(base)
    os.chmod(base, 0o755)
    tar = rootfs_tar(base)
    os.chmod(tar, 0o644)
    assert u.imagetool("import", tar, "busybox:latest").returncode == 0
    r = u.imagetool("run", "--rm", "busybox", "true")
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"slirp4netns needs {TUN} readable and writable by this user" in lines[0]
    assert "--network none" in lines[0]
    assert u.imagetool("ps", "-aq").stdout == ""
    assert _leftovers(u) == []


@pytest.fixture
def tun_for_users():
    """IMAGETOOL_TEST_OPEN_TUN=1: open /dev/net/tun to users (Debian's 0666) for this test
    and put its mode back afterwards; otherwise the host's mode as it is."""
    if os.environ.get("IMAGETOOL_TEST_OPEN_TUN") != "1" or not os.path.exists(TUN):
        yield
        return
    mode = os.stat(TUN).st_mode & 0o7777
    os.chmod(TUN, 0o666)
    try:
        yield
    finally:
        os.chmod(TUN, mode)


def test_main_story_rootless(subuser, tun_for_users):
    if not _tun_open_to_all():
        pytest.skip(f"{TUN} is not open to ordinary users on this host (Debian's default is "
                    "0666): slirp4netns cannot make the container's tap device; "
                    "IMAGETOOL_TEST_OPEN_TUN=1 opens it for this test")
    u = subuser
    d = os.path.join(u.home, "story")
    os.makedirs(d)
    base = rootfs_tar(d)
    os.chmod(d, 0o755)
    os.chmod(base, 0o644)
    assert u.imagetool("import", base, "busybox:latest").returncode == 0
    r = u.imagetool("build", "-q", "-t", "app:latest", os.path.join(REPO, "examples", "app"))
    assert r.returncode == 0, r.stderr
    port = free_port()
    r = u.imagetool("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "app:latest")
    try:
        assert r.returncode == 0, r.stderr
        page = _get(f"http://127.0.0.1:{port}/", time.monotonic() + 15)
        assert "hello from imagetool build" in page
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
        r = u.imagetool("rm", "web")
        assert r.returncode == 0, r.stderr
    finally:
        u.imagetool("rm", "-f", "web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert _leftovers(u) == []
