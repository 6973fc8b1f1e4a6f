"""Rootless: pyrunc run by an ordinary user, in a user namespace mapping only that user.

The test makes its own system user and removes it afterwards. The runtime is stdlib-only,
so the user runs it with Debian's /usr/bin/python3 and PYTHONPATH=<repo>: the venv's
interpreter may live under root's 0700 home."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.rig import clone_rootfs, default_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "pyrunc-rootless-test"
SYSTEM_PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def user():
    if not os.path.exists(SYSTEM_PY):
        pytest.skip("needs /usr/bin/python3")
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        created = True
    try:
        ok = subprocess.run(["runuser", "-u", USER, "--", SYSTEM_PY, "-c",
                             f"import sys; sys.path.insert(0, {REPO!r}); import runtime.cli; "
                             "assert sys.version_info >= (3, 11)"], capture_output=True)
        if ok.returncode != 0:
            pytest.skip(f"{USER} cannot run the runtime from {REPO} with {SYSTEM_PY}: "
                        f"{ok.stderr.decode().strip()[-200:]}")
        yield pwd.getpwnam(USER)
    finally:
        if created:
            subprocess.run(["userdel", USER], check=False)


@pytest.fixture
def rl_bundle(user, rootfs_template):
    top = tempfile.mkdtemp(prefix="pyrunc-rootless-", dir="/tmp")
    os.chmod(top, 0o755)
    clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
    cfg = default_config(["true"])
    from runtime.spec import default_spec
    rootless = default_spec(rootless=True)
    cfg["mounts"] = rootless["mounts"]
    cfg["linux"] = rootless["linux"]
    cfg["linux"]["uidMappings"][0]["hostID"] = user.pw_uid
    cfg["linux"]["gidMappings"][0]["hostID"] = user.pw_gid
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)
    os.lchown(top, user.pw_uid, user.pw_gid)
    yield top, cfg
    state = os.path.join(top, "state")
    if os.path.isdir(state):
        for cid in os.listdir(state):
            _as_user(top, "delete", "--force", cid)
    shutil.rmtree(top, ignore_errors=True)


def _as_user(top: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        r = subprocess.run(["runuser", "-u", USER, "--", "env", f"PYTHONPATH={REPO}",
                            SYSTEM_PY, "-m", "runtime", "--root", os.path.join(top, "state"),
                            *args], stdout=out, stderr=err, timeout=60)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, r.returncode, out.read(), err.read())


def _write(top: str, cfg: dict) -> None:
    with open(os.path.join(top, "config.json"), "w") as f:
        json.dump(cfg, f)


def test_rootless_run(user, rl_bundle):
    top, cfg = rl_bundle
    cfg["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; ls /dev/null; "
                              "touch /tmp/w && echo wrote"]
    cfg["root"]["readonly"] = False
    _write(top, cfg)
    p = _as_user(top, "run", "--bundle", top, "rl1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(user.pw_uid), "1"]
    assert lines[2:4] == ["/dev/null", "wrote"]
    assert os.stat(os.path.join(top, "rootfs/tmp/w")).st_uid == user.pw_uid


def test_rootless_detached_container_is_the_users(user, rl_bundle):
    top, cfg = rl_bundle
    cfg["process"]["args"] = ["sleep", "30"]
    _write(top, cfg)
    p = _as_user(top, "run", "-d", "--bundle", top, "rl2")
    assert p.returncode == 0, p.stderr
    st = json.loads(_as_user(top, "state", "rl2").stdout)
    assert st["status"] == "running" and st["owner"] == str(user.pw_uid)
    assert os.stat(f"/proc/{st['pid']}").st_uid == user.pw_uid
    assert _as_user(top, "delete", "--force", "rl2").returncode == 0
    assert not os.path.exists(os.path.join(top, "state", "rl2"))


def test_rootless_limits_it_cannot_set_are_an_error(user, rl_bundle):
    top, cfg = rl_bundle
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    _write(top, cfg)
    p = _as_user(top, "create", "--bundle", top, "rl3")
    assert p.returncode != 0 and b"cgroup" in p.stderr
    assert len(p.stderr.decode().strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(top, "state", "rl3"))


def test_rootless_true_as_root_is_refused():
    p = subprocess.run([sys.executable, "-m", "runtime", "--rootless", "true", "list"],
                       capture_output=True, cwd=REPO)
    assert p.returncode != 0 and b"--rootless=true" in p.stderr


def test_rootless_exec_joins_every_namespace(user, rl_bundle):
    """Without host privileges the container's namespaces can only be joined from inside its
    user namespace: exec must still land in all of them (those nsjoin retries after it)."""
    top, cfg = rl_bundle
    cfg["process"]["args"] = ["sleep", "30"]
    _write(top, cfg)
    assert _as_user(top, "run", "-d", "--bundle", top, "rl3").returncode == 0
    try:
        pid = json.loads(_as_user(top, "state", "rl3").stdout)["pid"]
        names = [n for n in ("user", "mnt", "pid", "ipc", "uts", "net", "cgroup")
                 if os.path.exists(f"/proc/self/ns/{n}")]
        p = _as_user(top, "exec", "rl3", "sh", "-c",
                     "for n in " + " ".join(names) + "; do readlink /proc/self/ns/$n; done")
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode().split() == [os.readlink(f"/proc/{pid}/ns/{n}") for n in names]
    finally:
        _as_user(top, "delete", "--force", "rl3")
