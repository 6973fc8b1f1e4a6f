"""The test rig shared by tests/ and conformance/: busybox bundles, a CLI runner with its
own state root, and cleanup of containers, cgroups and processes even when a test fails."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any

BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin:/sbin:/usr/sbin") or "/bin/busybox"
PYRUNC = os.path.join(os.path.dirname(sys.executable), "pyrunc")
RUNC = shutil.which("runc")
CRUN = shutil.which("crun")


def make_rootfs(dest: str) -> str:
    """A busybox rootfs from busybox-static: the binary, a symlink per applet, the usual dirs."""
    bindir = os.path.join(dest, "bin")
    os.makedirs(bindir, exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(bindir, "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for app in applets:
        if app != "busybox" and not os.path.lexists(os.path.join(bindir, app)):
            os.symlink("busybox", os.path.join(bindir, app))
    for d in ("proc", "sys", "dev", "etc", "tmp", "root", "home/user"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")
    return dest


def clone_rootfs(template: str, dest: str) -> str:
    """Copy a template rootfs cheaply: the busybox binary is hard-linked."""
    shutil.copytree(template, dest, symlinks=True, copy_function=os.link)
    return dest


def default_config(args: list[str]) -> dict[str, Any]:
    from runtime.spec import default_spec
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    return cfg


@dataclass
class Bundle:
    path: str
    config: dict[str, Any]

    @property
    def rootfs(self) -> str:
        return os.path.join(self.path, self.config["root"]["path"])

    def write(self) -> Bundle:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)
        return self

    def copy_to(self, path: str) -> Bundle:
        shutil.copytree(self.path, path, symlinks=True, copy_function=os.link)
        return Bundle(path, copy.deepcopy(self.config)).write()


@dataclass
class Runtime:
    """A runtime binary with its own --root, remembering ids to clean up."""

    binary: str
    root: str
    extra: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60,
                 check: bool = False, **kw: Any) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--root", self.root, *self.extra, *args]
        # Files, not pipes: a created container keeps create's stdio open (runc does too),
        # so reading a pipe to EOF would wait for the container.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = subprocess.run(cmd, input=input, stdout=out, stderr=err, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(cmd, r.returncode, out.read(), err.read())
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr.decode()}")
        return p

    def new_id(self, prefix: str = "t") -> str:
        cid = f"{prefix}{uuid.uuid4().hex[:10]}"
        self.ids.add(cid)
        return cid

    def state(self, cid: str) -> dict[str, Any]:
        p = self("state", cid, check=True)
        return json.loads(p.stdout)

    def run_script(self, bundle: Bundle, script: str) -> str:
        """`sh -c SCRIPT` run in the bundle (foreground `run`): its stdout; it must exit 0."""
        bundle.config["process"]["args"] = ["sh", "-c", script]
        bundle.write()
        p = self("run", "--bundle", bundle.path, self.new_id())
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    def cleanup(self) -> list[str]:
        """Force-delete every container this runtime knows; return ids that resisted."""
        left = []
        names = set(self.ids)
        if os.path.isdir(self.root):
            names |= set(os.listdir(self.root))
        for cid in sorted(names):
            if not os.path.exists(os.path.join(self.root, cid)):
                continue
            p = self("delete", "--force", cid, timeout=30)
            if p.returncode != 0 and os.path.exists(os.path.join(self.root, cid)):
                left.append(f"{cid}: {p.stderr.decode().strip()}")
        return left


def cgroup_leftovers(cid: str) -> list[str]:
    """Directories named after the container anywhere in the host's cgroup hierarchies."""
    found = []
    for base in ("/sys/fs/cgroup",):
        for dirpath, dirnames, _ in os.walk(base):
            if os.path.basename(dirpath) == cid:
                found.append(dirpath)
            if dirpath.count("/") > 8:
                dirnames[:] = []
    return found
