"""linux.netDevices: a host veth end moved into the container's network namespace (renamed
if asked), given back to the host under its own name at delete, and the refusals (no such
interface, no network namespace of its own, a bad name, a clash inside) leaving nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from tests import hostcaps
from tests.rig import Bundle, clone_rootfs, default_config

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not hostcaps.netdev_driver("veth"), reason="no veth driver")]


def _on_host(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


@pytest.fixture
def veth():
    """A veth pair on the host: (the end to move, its peer); both deleted afterwards."""
    a, b = f"pv{uuid.uuid4().hex[:8]}", f"pw{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    yield a, b
    for n in (a, b):
        if _on_host(n):
            subprocess.run(["ip", "link", "del", n], check=False)


def _no_pins(root: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return not [ln for ln in f if root in ln]


def test_moved_renamed_and_given_back(pyrunc, bundle, veth):
    dev, _ = veth
    bundle.config["linux"]["netDevices"] = {dev: {"name": "ctr7"}}
    out = pyrunc.run_script(bundle, "ls /sys/class/net")
    assert sorted(out.split()) == ["ctr7", "lo"]
    assert _on_host(dev) and not _on_host("ctr7") and _no_pins(pyrunc.root)


def test_name_kept_without_rename(pyrunc, bundle, veth):
    dev, _ = veth
    bundle.config["linux"]["netDevices"] = {dev: {}}
    assert sorted(pyrunc.run_script(bundle, "ls /sys/class/net").split()) == sorted([dev, "lo"])
    assert _on_host(dev)


def test_held_until_delete_even_after_the_init_exits(pyrunc, bundle, veth):
    """A veth would die with the namespace: it is pinned until delete gives it back."""
    dev, peer = veth
    bundle.config["linux"]["netDevices"] = {dev: {"name": "eth1"}}
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    assert not _on_host(dev)
    pyrunc("start", cid, check=True)
    for _ in range(200):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        subprocess.run(["sleep", "0.02"])
    assert pyrunc.state(cid)["status"] == "stopped"
    assert not _on_host(dev) and _on_host(peer)  # still in the pinned namespace
    pyrunc("delete", cid, check=True)
    assert _on_host(dev) and _no_pins(pyrunc.root)


def test_with_a_user_namespace(pyrunc, rootfs_template, veth):
    dev, _ = veth
    top = tempfile.mkdtemp(prefix="pyrunc-netdev-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
        cfg = default_config(["true"])
        cfg["linux"]["namespaces"].append({"type": "user"})
        maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = maps
        cfg["linux"]["netDevices"] = {dev: {"name": "uns0"}}
        out = pyrunc.run_script(Bundle(top, cfg), "ls /sys/class/net")
        assert sorted(out.split()) == ["lo", "uns0"]
        assert _on_host(dev)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("case", ["missing", "no-netns", "bad-name", "clash"])
def test_refusals_leave_nothing(pyrunc, bundle, veth, case):
    dev, _ = veth
    linux = bundle.config["linux"]
    field, words = f"linux.netDevices.{dev}", ""
    if case == "missing":
        linux["netDevices"] = {"pyrnope0": {}}
        field, words = "linux.netDevices.pyrnope0", "no such network interface"
    elif case == "no-netns":
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux["netDevices"] = {dev: {}}
        field, words = "linux.netDevices", "network namespace of the container's own"
    elif case == "bad-name":
        linux["netDevices"] = {dev: {"name": "a/b"}}
        field, words = f"linux.netDevices.{dev}.name", "not a valid interface name"
    else:  # `lo` exists in every network namespace: the kernel refuses the rename
        linux["netDevices"] = {dev: {"name": "lo"}}
        words = "cannot move into the container's network namespace: File exists"
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    err = p.stderr.decode()
    assert p.returncode != 0 and f"{field}: " in err and words in err, err
    assert "Traceback" not in err
    assert not os.path.exists(os.path.join(pyrunc.root, cid)) and _no_pins(pyrunc.root)
    assert _on_host(dev)


def test_into_a_namespace_joined_by_path(pyrunc, bundle, veth):
    """A network namespace named by path (ip netns): moved in, given back at delete."""
    dev, _ = veth
    name = f"pyrunc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for ns in bundle.config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{name}"
        bundle.config["linux"]["netDevices"] = {dev: {"name": "joined0"}}
        assert "joined0" in pyrunc.run_script(bundle, "ls /sys/class/net").split()
        assert _on_host(dev)
        inside = subprocess.run(["ip", "-n", name, "-o", "link"], capture_output=True,
                                text=True, check=True).stdout
        assert "joined0" not in inside and dev not in inside
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
