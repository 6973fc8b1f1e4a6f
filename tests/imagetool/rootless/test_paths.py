"""Slice 1: the per-user store and state directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from imagetool.cli import build_parser
from imagetool.rootless import paths
from tests.imagetool.rootless.conftest import PY, REPO


def test_root_keeps_var_lib_and_store_runtime_dir(tmp_path):
    assert os.geteuid() == 0
    assert build_parser().parse_args(["images"]).root == "/var/lib/imagetool"
    assert paths.state_dir(str(tmp_path)) == os.path.join(str(tmp_path), "runtime")


def test_user_defaults_follow_xdg(ruser):
    code = ("import json; from imagetool.cli import build_parser; "
            "from imagetool.run.records import Records; "
            "a = build_parser().parse_args(['images']); "
            "print(json.dumps([a.root, Records(a.root).runtime_root]))")
    r = ruser.py(code)
    assert r.returncode == 0, r.stderr
    store, state = json.loads(r.stdout)
    assert store == os.path.join(ruser.home, ".local", "share", "imagetool")
    assert state == os.path.join(ruser.home, "run", "imagetool", "runtime")
    r = ruser.py(code, env={"XDG_DATA_HOME": os.path.join(ruser.home, "data")})
    assert json.loads(r.stdout)[0] == os.path.join(ruser.home, "data", "imagetool")


def test_user_store_is_made_and_root_overrides(ruser):
    r = ruser.imagetool("images", "-q")
    assert r.returncode == 0, r.stderr
    other = os.path.join(ruser.home, "elsewhere")
    r = ruser.imagetool("--root", other, "images", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    # the store (if `images` made one) is the user's own, never /var/lib/imagetool
    for d in (os.path.join(ruser.home, ".local", "share", "imagetool"), other):
        if os.path.exists(d):
            assert os.stat(d).st_uid == ruser.uid


def test_no_runtime_dir_falls_back_to_a_private_tmp_dir(ruser):
    env = {k: v for k, v in ruser.env().items() if k != "XDG_RUNTIME_DIR"}
    code = ("from imagetool.rootless.paths import state_dir; print(state_dir('x'))")
    r = subprocess.run(["runuser", "-u", ruser.name, "--", "env", "-i",
                        *(f"{k}={v}" for k, v in env.items()), PY,
                        "-c", f"import sys; sys.path.insert(0, {REPO!r}); {code}"],
                       capture_output=True, text=True, timeout=60)
    tmp = f"/tmp/imagetool-run-{ruser.uid}"
    try:
        assert r.returncode == 0, r.stderr
        if not os.path.isdir(f"/run/user/{ruser.uid}"):
            assert r.stdout.strip() == os.path.join(tmp, "imagetool", "runtime")
            st = os.stat(tmp)
            assert st.st_uid == ruser.uid and st.st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def test_verb_scan_before_the_parser():
    from imagetool.rootless.entry import OUTSIDE, verb_of
    assert verb_of(["--root", "/x", "--debug", "run", "--rm", "busybox"]) == "run"
    assert verb_of(["container", "exec", "c", "true"]) == "exec"
    assert verb_of(["container", "--help"]) == "container"
    assert verb_of(["--version"]) is None and verb_of([]) is None
    assert verb_of(["-h", "run"]) is None
    assert {"exec", "login", "logout", "version"} <= OUTSIDE


def test_foreign_tmp_state_dir_is_refused(ruser):
    """/tmp/imagetool-run-UID made by someone else is never used."""
    tmp = f"/tmp/imagetool-run-{ruser.uid}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o777)  # root's, world-writable: a trap another user could have set
    try:
        env = {k: v for k, v in ruser.env().items() if k != "XDG_RUNTIME_DIR"}
        r = subprocess.run(["runuser", "-u", ruser.name, "--", "env", "-i",
                            *(f"{k}={v}" for k, v in env.items()), PY, "-c",
                            f"import sys; sys.path.insert(0, {REPO!r}); "
                            "from imagetool.rootless.paths import state_dir; state_dir('x')"],
                           capture_output=True, text=True, timeout=60)
        if os.path.isdir(f"/run/user/{ruser.uid}"):
            return
        assert r.returncode != 0
        assert f"{tmp} is not this user's directory: set XDG_RUNTIME_DIR" in r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_root_in_another_user_namespace_keeps_roots_defaults():
    """Root inside some other user namespace (a container's root) is not imagetool's
    rootless mode: only the namespace imagetool enters for a user is."""
    code = (f"import sys; sys.path.insert(0, {REPO!r}); "
            "from imagetool.rootless import paths; "
            "print(open('/proc/self/uid_map').read().split(), paths.default_store())")
    r = subprocess.run(["unshare", "--user", "--map-root-user", PY, "-c", code],
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("IMAGETOOL_ROOTLESS")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("['0', '0', '1'] ")  # root mapped alone: not the host's map
    assert r.stdout.split()[-1] == "/var/lib/imagetool"
