"""runtime-spec 1.1-1.3 fields beside runc 1.1.5, which predates them: where runc differs
the case pins what it does and why, so a newer runc (or a regression of ours) shows up.

- linux.intelRdt on a host without resctrl: both refuse.
- mounts[].uidMappings/gidMappings (1.1): runc 1.1.5 knows no such field; it makes a plain
  bind, so the container sees the host owners. pyrunc makes an idmapped mount.
- linux.netDevices (1.3): unknown to runc 1.1.5, ignored (the device stays on the host);
  pyrunc moves it in and gives it back.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid

import pytest

from conformance.pair import NAMES
from tests import hostcaps

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]


def test_intel_rdt_without_resctrl(pair, config):
    hostcaps.need(not os.path.isdir("/sys/fs/resctrl/info"), "a host without resctrl")
    config["linux"]["intelRdt"] = {"closID": "pyrunc-test", "l3CacheSchema": "L3:0=f"}
    got = pair.run_both(config)
    for n in NAMES:
        assert got[n].rc != 0, f"{n} ran a container asking for Intel RDT without resctrl"
    assert "config.json: linux.intelRdt:" in got["pyrunc"].stderr
    assert "resctrl" in got["pyrunc"].stderr
    assert "Intel RDT" in got["runc"].stderr  # "... but Intel RDT is not supported or enabled"


@pytest.fixture
def owned_source():
    """A world-traversable host dir holding a file of uid/gid 1000."""
    top = tempfile.mkdtemp(prefix="conf-idmap-", dir="/tmp")
    os.chmod(top, 0o755)
    with open(os.path.join(top, "f"), "w") as f:
        f.write("x")
    os.chown(os.path.join(top, "f"), 1000, 1000)
    yield top
    os.unlink(os.path.join(top, "f"))
    os.rmdir(top)


def test_idmapped_bind_mount(pair, config, owned_source):
    maps = [{"containerID": 1000, "hostID": 2000, "size": 1}]
    config["mounts"].append({"destination": "/mnt", "type": "bind", "source": owned_source,
                             "options": ["bind"], "uidMappings": maps, "gidMappings": maps})
    config["process"]["args"] = ["stat", "-c", "%u:%g", "/mnt/f"]
    got = pair.run_both(config)
    assert got["pyrunc"].rc == 0, got["pyrunc"].stderr
    assert got["pyrunc"].stdout.strip() == "2000:2000"
    # runc 1.1.5 (runtime-spec 1.0.2) ignores the mappings: a plain bind, the host owner.
    assert got["runc"].rc == 0 and got["runc"].stdout.strip() == "1000:1000", got["runc"]


@pytest.fixture
def veth():
    hostcaps.need(hostcaps.netdev_driver("veth"), "the veth driver")
    a, b = f"cv{uuid.uuid4().hex[:8]}", f"cw{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    yield a
    for n in (a, b):
        if os.path.exists(f"/sys/class/net/{n}"):
            subprocess.run(["ip", "link", "del", n], check=False)


def test_net_devices(pair, config, veth):
    config["linux"]["netDevices"] = {veth: {"name": "ctr0"}}
    config["process"]["args"] = ["ls", "/sys/class/net"]
    got = pair.run_both(config)
    assert got["pyrunc"].rc == 0, got["pyrunc"].stderr
    assert sorted(got["pyrunc"].stdout.split()) == ["ctr0", "lo"]
    # runc 1.1.5 knows no netDevices: the container has its loopback only.
    assert got["runc"].rc == 0 and got["runc"].stdout.split() == ["lo"], got["runc"]
    assert os.path.exists(f"/sys/class/net/{veth}")  # back on the host (never left, for runc)
