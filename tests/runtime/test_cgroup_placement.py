"""Where create puts the container's init: in its cgroup in every hierarchy the host has.

Without a user namespace the init moves itself into the v1 hierarchies ("0" into `tasks`,
which spares the kernel's RCU wait that a pid written by create costs); with a new user
namespace, or a cgroup namespace unshared after the join, the placement must be just as
complete. Each cgroup holds the init alone: the runtime's own process never entered it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from tests.cgroup_paths import CgroupNames, mounts, pids_in
from tests.rig import Bundle, clone_rootfs, default_config

pytestmark = pytest.mark.timeout(120)
T = 20


@pytest.fixture
def cgnames():
    names = CgroupNames()
    yield names
    left = names.cleanup()
    assert not left, f"cgroups left behind: {left}"


def _hierarchies_of(pid: int) -> dict[str, str]:
    """{hierarchy id: path} from /proc/<pid>/cgroup ('0' is the cgroup2 one)."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, _ctrls, path = line.rstrip("\n").split(":", 2)
            out[hid] = path
    return out


@pytest.fixture
def open_bundle(rootfs_template):
    """A bundle under a world-traversable dir: a mapped root (host uid 100000) must reach
    the rootfs, which pytest's 0700 tmp dirs forbid."""
    top = tempfile.mkdtemp(prefix="pyrunc-place-", dir="/tmp")
    os.chmod(top, 0o755)
    clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
    yield Bundle(top, default_config(["sleep", "60"]))
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("case", ["plain", "cgroupns", "userns"])
def test_init_is_alone_in_its_cgroup_in_every_hierarchy(case, cgnames, pyrunc, open_bundle):
    if not mounts():
        pytest.skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
    bundle = open_bundle
    top = cgnames.new()
    cfg = bundle.config
    cfg["linux"]["cgroupsPath"] = f"/{top}/ct"
    if case == "cgroupns":
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    if case == "userns":
        if not os.path.exists("/proc/self/ns/user"):
            pytest.skip("no user namespaces in this kernel")
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.write()
    cid = pyrunc.new_id("pl")
    pyrunc("run", "-d", "--bundle", bundle.path, cid, timeout=T, check=True)
    pid = pyrunc.state(cid)["pid"]
    have = _hierarchies_of(pid)
    mine = _hierarchies_of(os.getpid())
    assert set(have) == set(mine)
    assert {h: p for h, p in have.items() if p != f"/{top}/ct"} == {}, have
    dirs = [d for d in cgnames.dirs() if d.endswith(f"/{top}/ct")]
    assert len(dirs) == len(mounts()), dirs
    for d in dirs:
        assert pids_in(d) == [pid], d
    pyrunc("delete", "--force", cid, timeout=T, check=True)


@pytest.mark.parametrize("sub", [False, True])
def test_delete_removes_the_cgroup_with_any_sub_cgroup(sub, cgnames, pyrunc, open_bundle):
    """delete of a stopped container removes its directory in every hierarchy: with one
    rmdir each in the usual case, through the manager's walk when the container made
    sub-cgroups (here: one per hierarchy, made while it ran)."""
    if not mounts():
        pytest.skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
    bundle, top = open_bundle, cgnames.new()
    bundle.config["linux"]["cgroupsPath"] = f"/{top}/ct"
    bundle.write()
    cid = pyrunc.new_id("pl")
    pyrunc("run", "-d", "--bundle", bundle.path, cid, timeout=T, check=True)
    dirs = [d for d in cgnames.dirs() if d.endswith(f"/{top}/ct")]
    assert len(dirs) == len(mounts())
    if sub:
        for d in dirs:
            os.mkdir(os.path.join(d, "sub"))
    pyrunc("kill", cid, "KILL", timeout=T, check=True)
    deadline = time.monotonic() + 10
    while pyrunc.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    pyrunc("delete", cid, timeout=T, check=True)
    assert [d for d in cgnames.dirs() if f"/{top}/ct" in d] == []
