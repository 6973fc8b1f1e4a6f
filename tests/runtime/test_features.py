"""`features` describes what pyrunc does, checked against what the code accepts."""

from __future__ import annotations

import json
import subprocess

from runtime.linux.capabilities import CAP_NUMBER
from runtime.linux.mounts import parse_options
from tests.rig import PYRUNC


def _features() -> dict:
    return json.loads(subprocess.run([PYRUNC, "features"], capture_output=True,
                                     check=True).stdout)


def test_features_document():
    f = _features()
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == "1.3.0"
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                          "poststart", "poststop"]
    linux = f["linux"]
    assert set(linux["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "user",
                                        "cgroup"}
    assert all(c in CAP_NUMBER for c in linux["capabilities"])
    assert linux["cgroup"]["v1"] and not linux["cgroup"]["systemd"]
    assert linux["apparmor"] == {"enabled": False}


def test_every_listed_mount_option_is_understood():
    for opt in _features()["mountOptions"]:
        o = parse_options([opt])
        assert not o.data, f"{opt} would reach the kernel as filesystem data"


def test_checkpoint_is_a_clear_error():
    p = subprocess.run([PYRUNC, "checkpoint", "--image-path", "/x", "--leave-running", "id"],
                       capture_output=True)
    assert p.returncode != 0 and b"not supported" in p.stderr and b"CRIU" in p.stderr


# -- every field, against what the code accepts (runtime-spec features.md, features-linux.md) --

TOP = {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux", "annotations",
       "potentiallyUnsafeConfigAnnotations"}
LINUX = {"namespaces", "capabilities", "cgroup", "seccomp", "apparmor", "selinux", "intelRdt",
         "mountExtensions", "netDevices"}


def test_fields_present():
    f = _features()
    assert set(f) == TOP
    assert set(f["linux"]) >= LINUX


def test_namespaces_are_the_ones_config_takes():
    from runtime.spec import NAMESPACE_TYPES
    listed = _features()["linux"]["namespaces"]
    assert listed == sorted(listed) and set(listed) <= set(NAMESPACE_TYPES)
    assert set(NAMESPACE_TYPES) - set(listed) <= {"time"}  # only on a kernel without it


def test_seccomp_lists_are_what_check_accepts():
    import pytest

    from runtime.errors import ConfigError, PyruncError
    from runtime.linux import seccomp
    sec = _features()["linux"]["seccomp"]
    if not sec["enabled"]:  # only where libseccomp is missing
        with pytest.raises((PyruncError, OSError)):
            seccomp.version()
        return
    assert set(sec["supportedFlags"]) <= set(sec["knownFlags"])
    for action in sec["actions"]:
        extra = {"listenerPath": "/x"} if action == "SCMP_ACT_NOTIFY" else {}
        seccomp.check({"defaultAction": "SCMP_ACT_ALLOW", **extra,
                       "syscalls": [{"names": ["getpid"], "action": action}]})
    for op in sec["operators"]:
        seccomp.check({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": op}]}]})
    seccomp.check({"defaultAction": "SCMP_ACT_ALLOW", "architectures": sec["archs"],
                   "flags": sec["knownFlags"]})
    for bad in ({"defaultAction": "SCMP_ACT_NOPE"},
                {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]},
                {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}):
        with pytest.raises(ConfigError):
            seccomp.check(bad)


def test_supported_seccomp_flags_load(pyrunc, bundle):
    sec = _features()["linux"]["seccomp"]
    if not sec["enabled"]:
        return
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                         "flags": sec["supportedFlags"]}
    assert pyrunc.run_script(bundle, "echo ok").strip() == "ok"


def test_mount_extensions_and_net_devices():
    f = _features()
    assert f["linux"]["mountExtensions"] == {"idmap": {"enabled": True}}
    assert {"idmap", "ridmap"} <= set(f["mountOptions"])  # effects: test_idmap_mounts.py
    assert f["linux"]["netDevices"] == {"enabled": True}  # effects: test_netdevices.py


def test_unsupported_features_are_refused(pyrunc, bundle):
    """What features says pyrunc lacks is refused naming the field, nothing left behind."""
    import os
    f = _features()["linux"]
    assert f["intelRdt"] == {"enabled": False}
    assert f["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                           "rdma": False}
    assert f["apparmor"] == {"enabled": False} and f["selinux"] == {"enabled": False}
    bundle.config["linux"]["intelRdt"] = {"closID": "x"}
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"config.json: linux.intelRdt: Intel RDT is not" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_annotations():
    from runtime import __version__
    f = _features()
    assert f["annotations"]["io.github.pyrunc.version"] == __version__
    assert f["potentiallyUnsafeConfigAnnotations"] == []  # no annotation steers pyrunc
