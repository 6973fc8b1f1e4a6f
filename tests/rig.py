"""The test rig shared by tests/ and conformance/: busybox bundles (the rootfs maker and the
default config are conformance/engines/bundles.py's, shared with bench/), a CLI runner with its
own state root, and cleanup of containers, cgroups and processes even when a test fails."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any

from conformance.engines.bundles import (  # the suites' names for the shared busybox kit
    BUSYBOX,
    CRUN,
    PYRUNC,
    RUNC,
    clone_rootfs,
    default_config,
    make_rootfs,
)

__all__ = ["BUSYBOX", "CRUN", "PYRUNC", "RUNC", "Bundle", "Runtime", "cgroup_leftovers",
           "clone_rootfs", "default_config", "make_rootfs"]


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
