"""User networks: containers on one reach each other by name (/etc/hosts kept current as
members start and exit), network ls/inspect/rm/connect, --add-host and --dns. Real
containers and bridges (a private subnet no host route overlaps), removed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from tests import hostcaps
from tests.imagetool.storehelp import (
    imagetool,
    private_network,
    remove_containers,
    rootfs_tar,
    unmount_under,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itnet-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with private_network(root, "itn", 98) as bridge:
            try:
                yield {"dir": d, "root": root, "bridge": bridge}
            finally:
                remove_containers(root)
                for n in os.listdir(os.path.join(root, "networks")) \
                        if os.path.isdir(os.path.join(root, "networks")) else []:
                    imagetool(root, "network", "rm", n[:-5], check=False)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def _bridge_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def test_containers_on_a_user_network_reach_each_other_by_name(env, it):
    subnet = hostcaps.free_subnet(98)
    nid = it("network", "create", "--subnet", subnet, "appnet").stdout.decode().strip()
    assert len(nid) == 64
    [doc] = json.loads(it("network", "inspect", "appnet").stdout)
    bridge = doc["Options"]["bridge"]
    try:
        assert doc["IPAM"]["Config"] == [{"Subnet": subnet}]
        assert "appnet" in it("network", "ls", "--format", "{{.Name}}").stdout.decode().split()
        it("run", "-d", "--name", "web", "--network", "appnet", "busybox", "httpd", "-f",
           "-p", "80", "-h", "/etc")
        out = it("run", "--rm", "--name", "client", "--network", "appnet", "busybox", "sh",
                 "-c", "wget -qO- http://web/hostname && ping -c1 -W5 web >/dev/null && "
                 "echo pinged").stdout.decode().split()
        web_id = it("inspect", "-f", "{{.Id}}", "web").stdout.decode().strip()
        assert out == [web_id[:12], "pinged"]
        it("run", "-d", "--name", "second", "--network", "appnet", "busybox", "sleep", "60")
        # the first member's hosts file learned the second's name, and forgets it at exit
        assert "second" in it("exec", "web", "cat", "/etc/hosts").stdout.decode()
        it("exec", "web", "ping", "-c1", "-W5", "second")
        it("stop", "-t", "1", "second")
        assert "second" not in it("exec", "web", "cat", "/etc/hosts").stdout.decode()
        [doc] = json.loads(it("network", "inspect", "appnet").stdout)
        assert [c["Name"] for c in doc["Containers"].values()] == ["web"]
        p = imagetool(env["root"], "network", "rm", "appnet", check=False)
        assert p.returncode == 1 and "active endpoints (web)" in p.stderr.decode()
        # a container on the default bridge is not on appnet
        p = imagetool(env["root"], "run", "--rm", "busybox", "ping", "-c1", "-W2", "web",
                      check=False)
        assert p.returncode != 0
        it("rm", "-f", "web")
        it("network", "connect", "appnet", "second")
        it("start", "second")
        assert it("inspect", "-f", "{{.HostConfig.NetworkMode}}", "second").stdout == \
            b"appnet\n"
        it("rm", "-f", "second")
        assert it("network", "rm", "appnet").stdout == b"appnet\n"
        assert not _bridge_exists(bridge)
    finally:
        imagetool(env["root"], "rm", "-f", "web", "second", check=False)
        imagetool(env["root"], "network", "rm", "appnet", check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def test_network_refusals(env, it):
    p = imagetool(env["root"], "run", "--rm", "--network", "nosuchnet", "busybox", "true",
                  check=False)
    assert p.returncode == 125 and "network nosuchnet not found" in p.stderr.decode()
    for args, text in ((["bridge"], "invalid network name"),
                       (["--subnet", "nonsense", "n1"], "not a CIDR"),
                       (["--driver", "overlay", "n2"], "only bridge")):
        p = imagetool(env["root"], "network", "create", *args, check=False)
        assert p.returncode != 0 and text in p.stderr.decode(), p.stderr.decode()


def test_add_host_and_dns(env, it):
    out = it("run", "--rm", "--add-host", "db.local:10.1.2.3", "--dns", "9.9.9.9",
             "--network", "none", "busybox", "sh", "-c",
             "grep db.local /etc/hosts; grep nameserver /etc/resolv.conf").stdout.decode()
    assert out.splitlines() == ["10.1.2.3\tdb.local", "nameserver 9.9.9.9"]
    for bad, text in ((["--add-host", "nocolon"], "want HOST:IP"),
                      (["--dns", "notanip"], "not an IP address")):
        p = imagetool(env["root"], "run", "--rm", *bad, "--network", "none", "busybox",
                      "true", check=False)
        assert p.returncode == 125 and text in p.stderr.decode()
