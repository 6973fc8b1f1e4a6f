"""Bad input gets one clear line naming the field or file, a non-zero exit, and nothing left
behind; plus the CLI's runc-compatible surface (spec, --log, flags engines pass)."""

from __future__ import annotations

import json
import os

import pytest

from tests import hostcaps
from tests.rig import cgroup_leftovers

# a cpu number beyond every cpu the kernel could bring online (cpuset refuses it)
_NO_SUCH_CPU = hostcaps.possible_cpus() + 64


def _create_fails(pyrunc, bundle, *words: bytes) -> bytes:
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0
    for w in words:
        assert w in p.stderr, p.stderr
    assert len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
    assert not cgroup_leftovers(cid)
    return p.stderr


@pytest.mark.parametrize("mutate,words", [
    (lambda c: c["process"].pop("args"), [b"process.args"]),
    (lambda c: c["process"].update(args=[]), [b"process.args"]),
    (lambda c: c["mounts"][0].update(destination=""), [b"mounts[0].destination"]),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
     [b"linux.namespaces[5].type"]),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"),
     [b"process.capabilities.bounding[3]", b"CAP_NOPE"]),
    (lambda c: c["process"]["user"].update(uid=-1), [b"process.user.uid"]),
    (lambda c: c["process"]["rlimits"][0].update(hard=10 ** 9, soft=10 ** 9),
     [b"process.rlimits[0]", b"RLIMIT_NOFILE"]),
    (lambda c: c["root"].update(path="nonexistent"), [b"root.path"]),
    (lambda c: c["process"].update(args=["/no/such/binary"]), [b"/no/such/binary"]),
    (lambda c: c["process"].update(args=["nosuchcmd"]), [b"executable file not found"]),
    (lambda c: c["process"].update(cwd="relative"), [b"process.cwd"]),
    (lambda c: c["linux"].update(sysctl={"kernel.nosuchknob": "1"}),
     [b"linux.sysctl.kernel.nosuchknob"]),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
     [b"linux.uidMappings"]),
    (lambda c: c["linux"]["resources"].update(cpu={"cpus": str(_NO_SUCH_CPU)}), [b"cpuset"]),
    pytest.param(lambda c: c["process"].update(apparmorProfile="docker-default"),
                 [b"process.apparmorProfile", b"AppArmor"], marks=pytest.mark.skipif(
                     hostcaps.apparmor_enabled(),
                     reason="this host has AppArmor: the profile would be applied")),
    pytest.param(lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0"),
                 [b"process.selinuxLabel", b"SELinux"], marks=pytest.mark.skipif(
                     hostcaps.selinux_enabled(),
                     reason="this host has SELinux: the label would be applied")),
], ids=["no-args", "empty-args", "empty-dest", "bad-ns", "bad-cap", "neg-uid",
        "rlimit-too-high", "no-rootfs", "missing-binary", "not-in-path", "relative-cwd",
        "bad-sysctl", "maps-without-userns", "cgroup-value-refused", "apparmor-absent",
        "selinux-absent"])
def test_bad_config_is_one_clear_line(pyrunc, bundle, mutate, words):
    mutate(bundle.config)
    bundle.write()
    _create_fails(pyrunc, bundle, *words)


def test_invalid_json_and_missing_config(pyrunc, bundle):
    with open(os.path.join(bundle.path, "config.json"), "w") as f:
        f.write("{not json")
    _create_fails(pyrunc, bundle, b"config.json", b"invalid JSON")
    os.unlink(os.path.join(bundle.path, "config.json"))
    _create_fails(pyrunc, bundle, b"config.json", b"not found")


def test_log_json_carries_the_error(pyrunc, bundle, tmp_path):
    bundle.config["process"]["args"] = ["nosuchcmd"]
    bundle.write()
    log = str(tmp_path / "log.json")
    p = pyrunc("--log", log, "--log-format", "json", "create", "--bundle", bundle.path,
               pyrunc.new_id())
    assert p.returncode != 0
    last = json.loads(open(log).read().splitlines()[-1])
    assert last["level"] == "error" and "executable file not found" in last["msg"]
    assert last["time"].endswith("Z")


def test_delete_unknown_and_force(pyrunc):
    p = pyrunc("delete", "nosuch")
    assert p.returncode != 0 and b"does not exist" in p.stderr
    assert pyrunc("delete", "--force", "nosuch").returncode == 0


def test_spec_writes_runc_like_config(pyrunc, tmp_path):
    d = str(tmp_path)
    pyrunc("spec", "--bundle", d, check=True)
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["process"]["args"] == ["sh"] and cfg["root"] == {"path": "rootfs",
                                                               "readonly": True}
    assert {n["type"] for n in cfg["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts",
                                                              "mount"}
    p = pyrunc("spec", "--bundle", d)
    assert p.returncode != 0 and b"exists" in p.stderr
    os.unlink(os.path.join(d, "config.json"))
    pyrunc("spec", "--rootless", "--bundle", d, check=True)
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert {"type": "user"} in cfg["linux"]["namespaces"] and cfg["linux"]["uidMappings"]


def test_engine_flag_shapes(pyrunc, bundle, tmp_path):
    """Single-dash long flags (Go's flag package), signals as numbers, global flags first."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    pidfile = str(tmp_path / "pid")
    p = pyrunc("-log", str(tmp_path / "l.json"), "-log-format", "json", "create", "-bundle",
               bundle.path, "-pid-file", pidfile, cid)
    assert p.returncode == 0, p.stderr
    pyrunc("start", cid, check=True)
    pyrunc("kill", "--all", cid, "9", check=True)
    pyrunc("delete", "--force", cid, check=True)
    assert pyrunc("--systemd-cgroup", "list").returncode != 0


def test_version():
    import subprocess

    from tests.rig import PYRUNC
    out = subprocess.run([PYRUNC, "--version"], capture_output=True, check=True).stdout
    assert out.startswith(b"pyrunc version ") and b"spec: 1.3.0" in out
