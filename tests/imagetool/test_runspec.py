"""runspec.build: the one spec builder of run, create, unpack and the builder's RUN steps
(what each run option does to the spec), and runspec.write (one whole config.json)."""

from __future__ import annotations

import json
import os

import pytest

from imagetool import convert, runspec
from tests.rig import make_rootfs

IMAGE = {"os": "linux", "architecture": "amd64",
         "config": {"Cmd": ["sh"], "Env": ["A=1"], "User": "", "WorkingDir": "/w",
                    "Labels": {"l": "v"}}}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    root = make_rootfs(str(tmp_path_factory.mktemp("rs") / "rootfs"))
    with open(os.path.join(root, "etc", "passwd"), "a") as f:
        f.write("app:x:1000:1000::/home/app:/bin/sh\n")
    return root


def _build(rootfs, **kw):
    kw.setdefault("rootless", False)
    return runspec.build(IMAGE, runspec.RunOptions(**kw), rootfs)


def _netns(spec):
    return [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]


def test_defaults_are_the_images(rootfs):
    spec = _build(rootfs)
    assert spec["process"]["args"] == ["sh"]
    assert spec["process"]["cwd"] == "/w"
    assert spec["process"]["user"]["uid"] == 0 and spec["process"]["user"]["gid"] == 0
    assert "A=1" in spec["process"]["env"]
    assert spec["hostname"] == "container"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert _netns(spec) == [{"type": "network"}]
    assert spec["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert spec["annotations"]["l"] == "v"
    user = convert.resolve_user("", open(os.path.join(rootfs, "etc/passwd"), "rb").read(),
                                open(os.path.join(rootfs, "etc/group"), "rb").read())
    assert spec == convert.spec_from_image(IMAGE, user=user, hostname="container")


def test_process_options(rootfs):
    spec = _build(rootfs, entrypoint=["/bin/echo"], cmd=["hi"], env=["A=2", "B=3"],
                  user="app", workdir="/tmp", hostname="h1", terminal=True)
    p = spec["process"]
    assert p["args"] == ["/bin/echo", "hi"]
    assert "A=2" in p["env"] and "B=3" in p["env"] and "A=1" not in p["env"]
    assert p["user"]["uid"] == 1000 and p["cwd"] == "/tmp" and p["terminal"] is True
    assert spec["hostname"] == "h1"
    assert p["capabilities"]["effective"] == []   # docker 20.10: none for non-root


def test_host_options(rootfs):
    vol = {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}
    extra = {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": []}
    spec = runspec.build(IMAGE, runspec.RunOptions(
        mounts=[extra], resources={"memory": {"limit": 1 << 26}}, read_only=True,
        rootless=False), rootfs, [vol])
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[-2:] == ["/data", "/x"]          # image volumes, then the run's mounts
    assert dests[0] == "/proc"
    assert spec["linux"]["resources"]["memory"] == {"limit": 1 << 26}
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert spec["root"]["readonly"] is True


def test_network_modes(rootfs):
    host = _build(rootfs, network=runspec.NETWORK_HOST)
    assert _netns(host) == []
    assert not [k for k in host["linux"]["sysctl"] if k.startswith("net.")]
    joined = _build(rootfs, network="/proc/1/ns/net")
    assert _netns(joined) == [{"type": "network", "path": "/proc/1/ns/net"}]
    with pytest.raises(runspec.RunSpecError, match="network 'bridge'"):
        _build(rootfs, network="bridge")


def test_unknown_user_is_one_error(rootfs):
    with pytest.raises(convert.ConvertError, match="nosuch"):
        _build(rootfs, user="nosuch")


def test_rootless_is_applied_last(rootfs):
    """The rootless edit sees the finished namespaces: with the host's network, sysfs is
    bound read-only from the host (it cannot be mounted without a network namespace)."""
    spec = _build(rootfs, rootless=True, network=runspec.NETWORK_HOST)
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert "devices" not in spec["linux"]["resources"]
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sysfs["type"] == "bind" and "ro" in sysfs["options"]
    own = _build(rootless=True, rootfs=rootfs)
    assert next(m for m in own["mounts"] if m["destination"] == "/sys")["type"] == "sysfs"


def test_write_is_whole(tmp_path, rootfs):
    spec = _build(rootfs)
    path = runspec.write(str(tmp_path), spec)
    assert path == str(tmp_path / "config.json")
    with open(path) as f:
        assert json.load(f) == spec
    assert os.listdir(tmp_path) == ["config.json"]   # no temp file left
    with pytest.raises(TypeError):
        runspec.write(str(tmp_path), {"bad": object()})
    with open(path) as f:
        assert json.load(f) == spec                   # the old file stays whole
    assert os.listdir(tmp_path) == ["config.json"]
