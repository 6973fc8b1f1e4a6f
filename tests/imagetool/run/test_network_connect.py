"""network connect/disconnect on a RUNNING container, side by side with docker 20.10 (a
private dockerd): the container gets eth1 on the second network, reaches its members by
name and they reach it; disconnect takes eth1 and the names away again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from tests import hostcaps
from tests.imagetool.storehelp import (
    DOCKER,
    IMAGETOOL,
    imagetool,
    remove_containers,
    rootfs_tar,
    running_dockerd,
    unmount_under,
)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.timeout(300)]


def _subnets(n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        s = hostcaps.free_subnet(86)
        if s not in out:
            out.append(s)
    return out


@pytest.fixture(scope="module")
def tools():
    d = tempfile.mkdtemp(prefix="itcon-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with running_dockerd() as dk:
            save = subprocess.run([IMAGETOOL, "--root", root, "save", "busybox"],
                                  capture_output=True, timeout=120, check=True)
            p = subprocess.run([DOCKER or "docker", "load"], input=save.stdout, env=dk.env,
                               capture_output=True, timeout=120)
            assert p.returncode == 0, p.stderr.decode()
            yield {"ours": ([IMAGETOOL, "--root", root], None),
                   "docker": ([DOCKER or "docker"], dk.env)}
    finally:
        remove_containers(root)
        for n in ("cna", "cnb"):
            imagetool(root, "network", "rm", n, check=False)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tool_run(tools):
    """(call, subnets) for each tool in turn; containers and networks removed after."""
    made: list[tuple[str, str, str]] = []

    def call(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv, env = tools[tool]
        if args[:1] == ("run",):
            made.append((tool, "rm", args[args.index("--name") + 1]))
        if args[:2] == ("network", "create"):
            made.append((tool, "network", args[-1]))
        p = subprocess.run([*argv, *args], capture_output=True, env=env, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert not check or p.returncode == 0, (tool, args, p.stderr.decode())
        return p
    yield call
    for tool, kind, name in made:
        if kind == "rm":
            call(tool, "rm", "-f", name, check=False)
    for tool, kind, name in made:
        if kind == "network":
            call(tool, "network", "rm", name, check=False)


def _ifaces(call, tool: str, name: str) -> dict[str, str]:
    out = call(tool, "exec", name, "ip", "-4", "-o", "addr", "show").stdout.decode()
    return {w[1]: w[3] for w in (line.split() for line in out.splitlines()) if w[1] != "lo"}


def _members(call, tool: str, net: str) -> list[str]:
    doc = json.loads(call(tool, "network", "inspect", net).stdout)[0]
    return sorted(c["Name"] for c in (doc.get("Containers") or {}).values())


def _pings(call, tool: str, src: str, dst: str) -> bool:
    return call(tool, "exec", src, "ping", "-c1", "-W2", dst, check=False).returncode == 0


@pytest.mark.parametrize("tool", ["ours", "docker"])
def test_connect_and_disconnect_a_running_container(tool_run, tool):
    call = tool_run
    sa, sb = _subnets(2)
    call(tool, "network", "create", "--subnet", sa, "cna")
    call(tool, "network", "create", "--subnet", sb, "cnb")
    call(tool, "run", "-d", "--name", "ca", "--network", "cna", "busybox", "sleep", "120")
    call(tool, "run", "-d", "--name", "cb", "--network", "cnb", "busybox", "sleep", "120")
    assert not _pings(call, tool, "cb", "ca")
    call(tool, "network", "connect", "cna", "cb")
    ifs = _ifaces(call, tool, "cb")
    assert sorted(ifs) == ["eth0", "eth1"], ifs
    assert ifs["eth0"].rsplit(".", 1)[0] == sb.rsplit(".", 1)[0]
    assert ifs["eth1"].rsplit(".", 1)[0] == sa.rsplit(".", 1)[0]
    assert _pings(call, tool, "cb", "ca") and _pings(call, tool, "ca", "cb")
    assert _members(call, tool, "cna") == ["ca", "cb"]
    assert _members(call, tool, "cnb") == ["cb"]
    # twice: refused, nothing changes
    assert call(tool, "network", "connect", "cna", "cb", check=False).returncode != 0
    assert sorted(_ifaces(call, tool, "cb")) == ["eth0", "eth1"]
    call(tool, "network", "disconnect", "cna", "cb")
    assert sorted(_ifaces(call, tool, "cb")) == ["eth0"]
    assert not _pings(call, tool, "cb", "ca") and not _pings(call, tool, "ca", "cb")
    assert _members(call, tool, "cna") == ["ca"]
    p = call(tool, "network", "disconnect", "cna", "cb", check=False)
    assert p.returncode != 0 and "is not connected to network cna" in p.stderr.decode()
    # connected again, then the container exits: ca's name list forgets it (ours: the
    # connection ends with the run; docker keeps it for the next start)
    call(tool, "network", "connect", "cna", "cb")
    assert _pings(call, tool, "ca", "cb")
    call(tool, "stop", "-t", "1", "cb")
    assert _members(call, tool, "cna") == ["ca"]
    assert not _pings(call, tool, "ca", "cb")


@pytest.mark.parametrize("tool", ["ours", "docker"])
def test_connect_refusals(tool_run, tool):
    call = tool_run
    [sa] = _subnets(1)
    call(tool, "network", "create", "--subnet", sa, "cna")
    call(tool, "run", "-d", "--name", "lone", "--network", "none", "busybox", "sleep", "60")
    p = call(tool, "network", "connect", "cna", "lone", check=False)
    assert p.returncode != 0 and p.stdout == b""
    assert sorted(_ifaces(call, tool, "lone")) == []
    p = call(tool, "network", "connect", "nosuchnet", "lone", check=False)
    assert p.returncode != 0 and "nosuchnet not found" in p.stderr.decode()


def test_no_veth_left_on_the_host(tool_run):
    call = tool_run
    [sa] = _subnets(1)
    call("ours", "network", "create", "--subnet", sa, "cna")
    call("ours", "run", "-d", "--name", "v", "--network", "none", "busybox", "sleep", "60")
    call("ours", "run", "-d", "--name", "w", "--network", "cna", "busybox", "sleep", "60")
    cid = call("ours", "inspect", "-f", "{{.Id}}", "w").stdout.decode().strip()
    call("ours", "network", "create", "--subnet", _subnets(2)[1], "cnb")
    call("ours", "network", "connect", "cnb", "w")
    links = os.listdir("/sys/class/net")
    assert f"vx{cid[:9]}1" in links
    call("ours", "network", "disconnect", "cnb", "w")
    assert f"vx{cid[:9]}1" not in os.listdir("/sys/class/net")
    call("ours", "network", "connect", "cnb", "w")
    call("ours", "rm", "-f", "w")
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(f"vx{cid[:9]}")]
