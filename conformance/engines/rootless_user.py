"""An ordinary system user for rootless runs, shared by tests/imagetool/rootless and
bench/rootless_bench.py (no pytest here): made with useradd (a private HOME and
XDG_RUNTIME_DIR in a temp dir), optionally given a subordinate id range with usermod, and on
exit stripped of that range, of every process it still runs (by pid), of the user entry and
of its HOME (unmounted first, removed as root so files of subordinate ids go too).

`rootless_user(...)` raises procs.Unavailable when runuser/useradd are missing or the user
cannot import imagetool from this checkout; tests turn that into a skip."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conformance.engines.procs import Unavailable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = os.path.join(REPO, ".venv", "bin", "python")
SUBRANGE = (420000, 65536)


@dataclass
class RootlessUser:
    """A made user; `run` runs argv as it through runuser with a clean environment."""

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

    def py(self, code: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run(PY, "-c", f"import sys; sys.path.insert(0, {REPO!r})\n{code}", **kw)

    def imagetool(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run(PY, "-c", f"import sys; sys.path.insert(0, {REPO!r}); "
                        "from imagetool.cli import main; sys.exit(main())", *args, **kw)


@contextlib.contextmanager
def rootless_user(name: str, subids: bool) -> Iterator[RootlessUser]:
    """The user `name` (an old one of that name is deleted first), removed on exit with all
    it left; with `subids`, SUBRANGE as its subordinate uids and gids."""
    if shutil.which("runuser") is None or shutil.which("useradd") is None:
        raise Unavailable("needs runuser and useradd")
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
            raise Unavailable(f"{name} cannot import imagetool from {REPO} with {PY}: "
                              f"{ok.stderr.strip()[-200:]}")
        yield u
    finally:
        if subids:
            subprocess.run(["usermod", "--del-subuids", rng, "--del-subgids", rng, name],
                           check=False, capture_output=True)
        kill_user_processes(name)
        subprocess.run(["userdel", name], check=False)
        _unmount_under(home)
        shutil.rmtree(home, ignore_errors=True)


def kill_user_processes(name: str) -> None:
    """SIGKILL whatever the user still runs (a run that failed half way), by pid, until none
    is left or 10 s pass."""
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
