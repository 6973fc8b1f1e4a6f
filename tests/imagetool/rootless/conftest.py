"""Rootless fixtures: a system user made by the test (removed afterwards, also on failure),
with or without a subordinate id range (added with usermod and removed the same way), and
`as_user(...)` running imagetool as that user through runuser with a private HOME and
XDG_RUNTIME_DIR under a temp directory the test removes (as root, so files owned by
subordinate ids go too)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PY = os.path.join(REPO, ".venv", "bin", "python")
SUBRANGE = (420000, 65536)


@dataclass
class RootlessUser:
    name: str
    uid: int
    gid: int
    home: str
    subids: bool
    prefix: tuple[str, ...] = ()  # e.g. nsenter into a test's mount namespace

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "XDG_RUNTIME_DIR": os.path.join(self.home, "run"),
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}

    def run(self, *argv: str, timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        e = dict(self.env(), **(env or {}))
        return subprocess.run([*self.prefix, "runuser", "-u", self.name, "--", "env", "-i",
                               *(f"{k}={v}" for k, v in e.items()), *argv],
                              capture_output=True, text=True, timeout=timeout, cwd="/")

    def py(self, code: str, **kw) -> subprocess.CompletedProcess:
        return self.run(PY, "-c", f"import sys; sys.path.insert(0, {REPO!r})\n{code}", **kw)

    def imagetool(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(PY, "-c", f"import sys; sys.path.insert(0, {REPO!r}); "
                        "from imagetool.cli import main; sys.exit(main())", *args, **kw)


def _make_user(name: str, subids: bool) -> Iterator[RootlessUser]:
    if shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("needs runuser and useradd")
    try:
        pwd.getpwnam(name)
        subprocess.run(["userdel", name], check=False)
    except KeyError:
        pass
    home = tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp")
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", home,
                    "--shell", "/usr/sbin/nologin", name], check=True)
    rng = f"{SUBRANGE[0]}-{SUBRANGE[0] + SUBRANGE[1] - 1}"
    try:
        pw = pwd.getpwnam(name)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
        os.mkdir(os.path.join(home, "run"), 0o700)
        os.chown(os.path.join(home, "run"), pw.pw_uid, pw.pw_gid)
        if subids:
            subprocess.run(["usermod", "--add-subuids", rng, "--add-subgids", rng, name],
                           check=True)
        u = RootlessUser(name, pw.pw_uid, pw.pw_gid, home, subids)
        ok = u.py("import imagetool.cli")
        if ok.returncode != 0:
            pytest.skip(f"{name} cannot import imagetool from {REPO} with {PY}: "
                        f"{ok.stderr.strip()[-200:]}")
        yield u
    finally:
        if subids:
            subprocess.run(["usermod", "--del-subuids", rng, "--del-subgids", rng, name],
                           check=False, capture_output=True)
        _kill_users_processes(name)
        subprocess.run(["userdel", name], check=False)
        _unmount_under(home)
        shutil.rmtree(home, ignore_errors=True)


def _kill_users_processes(name: str) -> None:
    """Whatever the user still runs (a test that failed half way), by pid."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    left += 1
                    os.kill(int(pid), 9)
            except OSError:
                continue
        if not left:
            return
        time.sleep(0.05)


def _unmount_under(top: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for m in sorted((p for p in points if p.startswith(top + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


@pytest.fixture(scope="module")
def ruser() -> Iterator[RootlessUser]:
    """A user with no subordinate ids."""
    yield from _make_user("itool-rl-plain", subids=False)


@pytest.fixture(scope="module")
def subuser() -> Iterator[RootlessUser]:
    """A user with 65536 subordinate uids and gids from 420000."""
    yield from _make_user("itool-rl-sub", subids=True)
