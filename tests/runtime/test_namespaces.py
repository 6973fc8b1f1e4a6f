"""Namespaces seen from inside: new ones, joined ones by path, and user-namespace mappings."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests import hostcaps
from tests.rig import Bundle, clone_rootfs, default_config


def test_new_namespaces_differ_from_host(pyrunc, bundle):
    hostcaps.need(hostcaps.has_namespace("time"), "time namespaces (CONFIG_TIME_NS)")
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    out = pyrunc.run_script(bundle, "for n in pid net ipc uts mnt cgroup time user; do "
                               "echo $n $(readlink /proc/self/ns/$n); done; echo pid=$$")
    seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    for ns in ("pid", "net", "ipc", "uts", "mnt", "cgroup", "time"):
        assert seen[ns] != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert seen["user"] == os.readlink("/proc/self/ns/user")  # not asked for
    assert "pid=1" in out


def test_cgroup_namespace_root_is_the_container_cgroup(pyrunc, bundle):
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    out = pyrunc.run_script(bundle, "cat /proc/self/cgroup")
    for line in out.splitlines():
        assert line.split(":", 2)[2] == "/", line


def test_hostname_domainname_and_loopback(pyrunc, bundle):
    bundle.config["hostname"] = "box1"
    bundle.config["domainname"] = "example.org"
    out = pyrunc.run_script(bundle, "hostname; cat /proc/sys/kernel/domainname; "
                               "cat /sys/class/net/lo/operstate; ls /sys/class/net")
    lines = out.split()
    assert lines[:2] == ["box1", "example.org"]
    assert lines[2] in ("unknown", "up")  # lo reports "unknown" when up
    assert lines[3:] == ["lo"]
    flags = int(pyrunc.run_script(bundle, "cat /sys/class/net/lo/flags").strip(), 16)
    assert flags & 1, "lo is not up"


def test_join_namespaces_by_path(pyrunc, make_bundle):
    a = make_bundle(["sleep", "30"])
    a.config["hostname"] = "shared-uts"
    a.write()
    ida = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", a.path, ida, check=True)
    pida = pyrunc.state(ida)["pid"]
    b = make_bundle()
    b.config["hostname"] = ""
    for ns in b.config["linux"]["namespaces"]:
        if ns["type"] in ("network", "uts", "ipc"):
            ns["path"] = f"/proc/{pida}/ns/{'net' if ns['type'] == 'network' else ns['type']}"
    out = pyrunc.run_script(b, "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc")
    lines = out.split()
    assert lines[0] == "shared-uts"
    assert lines[1] == os.readlink(f"/proc/{pida}/ns/net")
    assert lines[2] == os.readlink(f"/proc/{pida}/ns/ipc")


def test_join_missing_namespace_path_fails_cleanly(pyrunc, bundle):
    bundle.config["linux"]["namespaces"][1]["path"] = "/proc/999999999/ns/net"
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"linux.namespaces" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_own_mount_namespace_by_path_never_moves_our_root(pyrunc, bundle):
    """The runtime's own mount namespace named by path is the same as inheriting it: the
    root is built apart (scratchns.py), never pivoted here; our "/" and mount table stay."""
    root_before = os.stat("/")
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] == "mount":
            ns["path"] = f"/proc/{os.getpid()}/ns/mnt"
    out = pyrunc.run_script(bundle, "readlink /proc/self/ns/mnt; ls /; touch /x || echo ro")
    lines = out.split()
    assert lines[0] == os.readlink("/proc/self/ns/mnt")
    assert lines[1:-1] == sorted(os.listdir(bundle.rootfs))
    assert lines[-1] == "ro"  # root.readonly, on the detached tree only
    assert (os.stat("/").st_dev, os.stat("/").st_ino) == (root_before.st_dev,
                                                          root_before.st_ino)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if bundle.path in line]


@pytest.fixture
def userns_bundle(rootfs_template):
    """A bundle under a world-traversable dir: a mapped root (host uid 100000) must be able
    to reach the rootfs, which pytest's 0700 tmp dirs forbid."""
    top = tempfile.mkdtemp(prefix="pyrunc-userns-", dir="/tmp")
    os.chmod(top, 0o755)
    clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
    cfg = default_config(["true"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    yield Bundle(top, cfg).write()
    shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_mappings(pyrunc, userns_bundle):
    out = pyrunc.run_script(userns_bundle, "id -u; id -g; cat /proc/self/uid_map "
                            "/proc/self/gid_map; stat -c %u /bin/busybox; ls /dev/null")
    lines = [x.split() for x in out.strip().splitlines()]
    assert lines[0] == ["0"] and lines[1] == ["0"]
    assert lines[2] == ["0", "100000", "65536"] and lines[3] == ["0", "100000", "65536"]
    with open("/proc/sys/fs/overflowuid") as f:
        overflow = f.read().strip()
    assert lines[4] == [overflow]  # host root is unmapped: the kernel's overflow uid
    assert lines[5] == ["/dev/null"]


def test_user_namespace_non_root_user(pyrunc, userns_bundle):
    userns_bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    out = pyrunc.run_script(userns_bundle, "id")
    assert out.strip() == "uid=1000(user) gid=1000(user) groups=5(tty)"  # additionalGids only
