"""Image config -> bundle: the conversion rules (docker's command/user/env semantics, its
default capabilities, mounts and seccomp profile), and bundles we unpack running under runc
and under pyrunc, each with a private --root, in both unpack modes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from imagetool import bundle as bundles
from imagetool import convert, snapshots
from imagetool.store import Store
from tests.imagetool.storehelp import imagetool
from tests.imagetool.test_layers import member, tar
from tests.imagetool.test_unpack import busybox_tar, put_image
from tests.rig import PYRUNC, RUNC, Runtime, cgroup_leftovers

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PASSWD = (b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:User:/home/user:/bin/sh\n"
          b"svc:x:999:998::/srv:/bin/false\n")
GROUP = b"root:x:0:\nwheel:x:10:user,svc\nuser:x:1000:\nsvcgrp:x:998:\naudio:x:29:user\n"


# -- conversion rules --------------------------------------------------------------------------
@pytest.mark.parametrize("spec,want", [
    ("", (0, 0, "/root", [0])),
    ("root", (0, 0, "/root", [0])),
    ("user", (1000, 1000, "/home/user", [1000, 10, 29])),
    ("1000", (1000, 1000, "/home/user", [1000, 10, 29])),
    ("user:wheel", (1000, 10, "/home/user", [10])),
    ("user:5", (1000, 5, "/home/user", [5])),
    ("svc", (999, 998, "/srv", [998, 10])),
    ("4242", (4242, 0, "/", [0])),
    ("4242:4343", (4242, 4343, "/", [4343])),
])
def test_users_resolve_through_passwd_and_group(spec, want):
    uid, gid, home, groups = want
    assert convert.resolve_user(spec, PASSWD, GROUP) == {"uid": uid, "gid": gid, "home": home,
                                                         "additionalGids": groups}


@pytest.mark.parametrize("spec,passwd,message", [
    ("nobody", PASSWD, "unable to find user nobody"),
    ("user:nogroup", PASSWD, "unable to find group nogroup"),
    ("user", None, "none in the image"),
])
def test_unknown_users_and_groups_are_errors(spec, passwd, message):
    with pytest.raises(convert.ConvertError, match=message):
        convert.resolve_user(spec, passwd, GROUP)


def test_numeric_user_without_passwd_is_fine():
    assert convert.resolve_user("12:34", None, None) == {"uid": 12, "gid": 34, "home": "/",
                                                         "additionalGids": [34]}


@pytest.mark.parametrize("ep,cmd,want", [
    (None, None, ["/entry", "-v", "default", "args"]),
    (None, ["mine"], ["/entry", "-v", "mine"]),
    (["/other"], None, ["/other"]),  # a new entrypoint drops the image's Cmd
    (["/other"], ["x"], ["/other", "x"]),
    ([], None, None),  # entrypoint cleared and nothing else: no command
    ([], ["sh"], ["sh"]),
])
def test_entrypoint_and_cmd_overrides(ep, cmd, want):
    conf = {"Entrypoint": ["/entry", "-v"], "Cmd": ["default", "args"]}
    if want is None:
        with pytest.raises(convert.ConvertError, match="no command"):
            convert.command(conf, ep, cmd)
    else:
        assert convert.command(conf, ep, cmd) == want


def test_spec_defaults_like_docker():
    image = {"os": "linux", "architecture": "amd64", "author": "me",
             "config": {"Cmd": ["run"], "Env": ["A=1", "PATH=/opt/bin"], "WorkingDir": "app",
                        "Labels": {"com.example.team": "infra"}, "StopSignal": "SIGQUIT",
                        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}}
    root = convert.spec_from_image(image, user={"uid": 0, "gid": 0, "home": "/root"},
                                   env=["A=2", "B=3"], seccomp=False)
    p = root["process"]
    assert p["args"] == ["run"] and p["cwd"] == "/app" and p["terminal"] is False
    assert p["env"] == ["A=2", "PATH=/opt/bin", "B=3", "HOME=/root"]
    assert p["capabilities"]["effective"] == p["capabilities"]["bounding"] == convert.DOCKER_CAPS
    assert len(convert.DOCKER_CAPS) == 14 and "CAP_SYS_ADMIN" not in convert.DOCKER_CAPS
    assert p["noNewPrivileges"] is False and root["root"] == {"path": "rootfs",
                                                              "readonly": False}
    assert sorted(n["type"] for n in root["linux"]["namespaces"]) == \
        ["ipc", "mount", "network", "pid", "uts"]
    assert [m["destination"] for m in root["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "/proc/kcore" in root["linux"]["maskedPaths"]
    assert "/proc/sys" in root["linux"]["readonlyPaths"]
    assert root["annotations"] == {
        "com.example.team": "infra", "org.opencontainers.image.stopSignal": "SIGQUIT",
        "org.opencontainers.image.exposedPorts": "443/tcp,80/tcp",
        "org.opencontainers.image.author": "me", "org.opencontainers.image.os": "linux",
        "org.opencontainers.image.architecture": "amd64"}
    assert "seccomp" not in root["linux"]
    user = convert.spec_from_image(image, user={"uid": 1000, "gid": 1000, "home": "/h"})
    caps = user["process"]["capabilities"]
    assert caps["bounding"] == convert.DOCKER_CAPS and caps["effective"] == caps["permitted"] \
        == []
    assert user["process"]["env"][-1] == "HOME=/h"


needs_profile = pytest.mark.skipif(not os.path.isfile(convert.DOCKER_SECCOMP),
                                   reason=f"{convert.DOCKER_SECCOMP} missing")


@needs_profile
@pytest.mark.parametrize("extra", [[], ["CAP_SYS_ADMIN"], ["CAP_SYS_PTRACE", "CAP_SYS_TIME"]])
def test_docker_seccomp_conversion_agrees_with_the_runtime_tests(extra):
    """The conversion tests/runtime/test_seccomp.py uses for pyrunc, now in imagetool.convert."""
    from tests.runtime.test_seccomp import docker_profile
    caps = convert.DOCKER_CAPS + extra
    ours = convert.default_seccomp(caps)
    theirs = docker_profile(caps)

    def norm(sec: dict) -> dict:
        return {**sec, "syscalls": [{k: v for k, v in r.items() if v != []}
                                    for r in sec["syscalls"]]}
    assert ours is not None and norm(ours) == norm(theirs)
    names = {n for r in ours["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert ("bpf" in names) == ("CAP_SYS_ADMIN" in extra)
    assert ("kcmp" in names) == ("CAP_SYS_PTRACE" in extra)
    assert ("settimeofday" in names) == ("CAP_SYS_TIME" in extra)
    assert "chroot" in names  # CAP_SYS_CHROOT is one of docker's defaults
    assert ours["defaultAction"] == "SCMP_ACT_ERRNO" and ours["defaultErrnoRet"] == 38


def test_docker_seccomp_conversion_rules():
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "archMap": [{"architecture": "SCMP_ARCH_AARCH64",
                            "subArchitectures": ["SCMP_ARCH_ARM"]}],
               "syscalls": [
                   {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                   {"name": "old_style", "action": "SCMP_ACT_ALLOW"},
                   {"names": ["armonly"], "action": "SCMP_ACT_ALLOW",
                    "includes": {"arches": ["arm64"]}},
                   {"names": ["notarm"], "action": "SCMP_ACT_ALLOW",
                    "excludes": {"arches": ["arm64"]}},
                   {"names": ["newkernel"], "action": "SCMP_ACT_ALLOW",
                    "includes": {"minKernel": "5.9"}},
                   {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                    "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                    "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}]}
    sec = convert.docker_seccomp(profile, ["CAP_KILL"], machine="aarch64", kernel="5.4.0")
    assert sec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [r["names"][0] for r in sec["syscalls"]] == ["read", "old_style", "armonly", "clone"]
    assert sec["syscalls"][-1]["errnoRet"] == 1 and sec["syscalls"][-1]["args"][0]["index"] == 0
    sec = convert.docker_seccomp(profile, ["CAP_SYS_ADMIN"], machine="aarch64", kernel="6.1")
    assert [r["names"][0] for r in sec["syscalls"]] == ["read", "old_style", "armonly",
                                                         "newkernel"]


# -- bundles that run --------------------------------------------------------------------------
APP = "docker.io/library/app:latest"
SCRIPT = ("id; pwd; echo FOO=$FOO; echo HOME=$HOME; hostname; cat /data/seed; "
          "echo written >/data/out; grep -E '^(CapEff|Seccomp):' /proc/self/status")


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


@pytest.fixture
def app_image(tmp_path, store):
    etc = tar(member("etc", "dir"), member("etc/passwd", data=PASSWD),
              member("etc/group", data=GROUP), member("data", "dir", uid=1000, gid=1000),
              member("data/seed", data=b"seeded by the image\n", uid=1000, gid=1000),
              member("home", "dir"), member("home/user", "dir", uid=1000, gid=1000))
    put_image(store, [(busybox_tar(str(tmp_path)), "gzip"), (etc, "zstd")], APP, config={
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": [SCRIPT], "Env": ["FOO=bar"], "User": "user",
        "WorkingDir": "/work/dir", "Volumes": {"/data": {}}, "Labels": {"x": "y"}})
    return APP


@pytest.fixture
def runc():
    if not RUNC:
        pytest.skip("runc not installed")
    root = tempfile.mkdtemp(prefix="runc-test-root-")
    rt = Runtime(RUNC, root)
    yield rt
    left = rt.cleanup()
    cg = [p for cid in rt.ids for p in cgroup_leftovers(cid)]
    shutil.rmtree(root, ignore_errors=True)
    assert not left and not cg, (left, cg)


@pytest.fixture
def made():
    paths: list[str] = []
    yield paths
    for p in paths:
        rootfs = os.path.join(p, "rootfs")
        if os.path.isdir(rootfs) and snapshots.is_mountpoint(rootfs):
            snapshots.unmount(rootfs)


@needs_root
@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("which", ["runc", "pyrunc"])
def test_our_bundles_run_under_runc_and_pyrunc(tmp_path, store, app_image, made, request,
                                               which, mode):
    rt = request.getfixturevalue(which)
    path = str(tmp_path / "web-1")
    made.append(path)
    imagetool(store.root, "unpack", "--mode", mode, app_image, path)
    v = Runtime(PYRUNC, str(tmp_path / "validate"))("validate", "--bundle", path)
    assert v.returncode == 0, v.stderr
    p = rt("run", "--bundle", path, rt.new_id())
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    ident, _, groups = lines[0].partition(" groups=")
    assert ident == "uid=1000(user) gid=1000(user)"
    assert sorted(groups.split(",")) == sorted(["1000(user)", "10(wheel)", "29(audio)"])
    assert lines[1:6] == ["/work/dir", "FOO=bar", "HOME=/home/user", "web-1",
                          "seeded by the image"]
    status = dict(line.split(":\t") for line in lines[6:])
    assert status["CapEff"] == "0000000000000000"
    want_seccomp = "2" if os.path.isfile(convert.DOCKER_SECCOMP) else "0"
    assert status["Seccomp"] == want_seccomp
    # the volume lives in the bundle, outside the rootfs
    assert open(os.path.join(path, "volumes/0-data/out")).read() == "written\n"
    assert not os.path.exists(os.path.join(path, "rootfs/data/out"))
    assert os.lstat(os.path.join(path, "volumes/0-data")).st_uid == 1000
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert cfg["annotations"]["x"] == "y"
    assert cfg["mounts"][-1] == {"destination": "/data", "type": "bind",
                                 "source": os.path.join(path, "volumes/0-data"),
                                 "options": ["rbind", "rprivate"]}
    if mode == "overlay":
        assert snapshots.is_mountpoint(os.path.join(path, "rootfs"))
        assert os.path.isdir(os.path.join(path, "overlay/upper/work/dir"))  # made for cwd
    bundles.remove(path)
    assert not os.path.exists(path)


@needs_root
@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_cli_overrides_run_as_asked(tmp_path, store, app_image, made, pyrunc, mode):
    path = str(tmp_path / "b")
    made.append(path)
    imagetool(store.root, "unpack", "--mode", mode, "--entrypoint", "", "--cmd",
              '["/bin/sh", "-c", "id -u; pwd; echo $FOO $X; grep CapEff /proc/self/status"]',
              "-u", "0", "-e", "X=1", "-e", "FOO=over", "-w", "/tmp", "--no-seccomp",
              "--hostname", "h", app_image, path)
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert "seccomp" not in cfg["linux"] and cfg["hostname"] == "h"
    p = pyrunc("run", "--bundle", path, pyrunc.new_id())
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().splitlines() == ["0", "/tmp", "over 1", "CapEff:\t00000000a80425fb"]


@needs_root
@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("case", ["unknown-user", "passwd-escapes", "volume-escapes"])
def test_config_problems_fail_cleanly(tmp_path, store, made, mode, case):
    layer = {
        "unknown-user": tar(member("etc", "dir"), member("etc/passwd", data=PASSWD)),
        "passwd-escapes": tar(member("etc", "dir"), member("etc/passwd", "symlink",
                                                            link="../../../../etc/passwd")),
        "volume-escapes": tar(member("v", "symlink", link="../../../../etc")),
    }[case]
    config = {"Cmd": ["true"], "User": "ghost" if case == "unknown-user" else ""}
    if case == "volume-escapes":
        config["Volumes"] = {"/v": {}}
    put_image(store, [(busybox_tar(str(tmp_path)), "gzip"), (layer, "gzip")], APP,
              config=config)
    path = str(tmp_path / "b")
    made.append(path)
    p = imagetool(store.root, "unpack", "--mode", mode, APP, path, check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert ("unable to find user ghost" in err) if case == "unknown-user" else \
        ("leads outside the rootfs" in err), err
    assert not os.path.exists(path)


def test_no_command_is_refused_before_any_layer_is_unpacked(tmp_path, store, monkeypatch):
    put_image(store, [(busybox_tar(str(tmp_path)), "gzip")], "docker.io/library/nocmd:1",
              config={"Env": ["A=b"]})
    applied: list[str] = []
    real = bundles.layers.Applier.apply
    monkeypatch.setattr(bundles.layers.Applier, "apply",
                        lambda self, *a, **kw: applied.append("x") or real(self, *a, **kw))
    with pytest.raises(bundles.BundleError, match="no command"):
        bundles.unpack(store, "nocmd:1", str(tmp_path / "b"), mode="copy")
    assert applied == [] and not os.path.exists(tmp_path / "b")
    meta = bundles.unpack(store, "nocmd:1", str(tmp_path / "b"), mode="copy", cmd=["true"])
    assert applied == ["x"] and meta["mode"] == "copy"
