"""Two runtimes side by side: runc (the reference) and pyrunc, each with its own --root.

A case builds one bundle per runtime from the same config (clone of a shared busybox rootfs),
runs it under each, and hands back what each container printed. Cleanup force-deletes every
container either runtime made and reports anything left behind: state directories, cgroups.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance import observe
from tests.rig import PYRUNC, RUNC, Bundle, Runtime, cgroup_leftovers, clone_rootfs

Mutator = Callable[[dict[str, Any], str], None]  # (config, bundle path) -> None, in place
NAMES = ("runc", "pyrunc")


@dataclass
class Outcome:
    """One runtime's result for one case."""

    runtime: str
    cid: str
    bundle: Bundle
    rc: int
    stdout: str
    stderr: str

    def subst(self) -> dict[str, str]:
        return {self.cid: "<ID>", self.bundle.path: "<BUNDLE>"}


class Pair:
    def __init__(self, template: str) -> None:
        self.template = template
        # Not under pytest's 0700 tmp dirs: a user namespace's root must reach the bundles.
        self.workdir = tempfile.mkdtemp(prefix="conf-bundles-")
        os.chmod(self.workdir, 0o711)
        self.rt = {name: Runtime(binary, tempfile.mkdtemp(prefix=f"conf-{name}-root-"))
                   for name, binary in (("runc", RUNC), ("pyrunc", PYRUNC))}
        self._count = 0

    def bundle(self, runtime: str, config: dict[str, Any],
               mutate: Mutator | None = None) -> Bundle:
        """A fresh bundle with its own rootfs copy; `mutate` may add files next to it."""
        self._count += 1
        path = os.path.join(self.workdir, f"{runtime}-{self._count}")
        os.makedirs(path)
        clone_rootfs(self.template, os.path.join(path, "rootfs"))
        cfg = copy.deepcopy(config)
        if mutate is not None:
            mutate(cfg, path)
        return Bundle(path, cfg).write()

    def run(self, runtime: str, config: dict[str, Any], mutate: Mutator | None = None,
            timeout: float = 60) -> Outcome:
        rt = self.rt[runtime]
        b = self.bundle(runtime, config, mutate)
        cid = rt.new_id("conf")
        p = rt("run", "--bundle", b.path, cid, timeout=timeout)
        return Outcome(runtime, cid, b, p.returncode, p.stdout.decode(errors="replace"),
                       p.stderr.decode(errors="replace"))

    def run_both(self, config: dict[str, Any], mutate: Mutator | None = None
                 ) -> dict[str, Outcome]:
        return {name: self.run(name, config, mutate) for name in NAMES}

    def observe(self, config: dict[str, Any], probes: tuple[str, ...] | list[str],
                mutate: Mutator | None = None, extra: dict[str, str] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Outcome]]:
        """Run the probe script under both runtimes; return both normalised observations."""
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sh", "-c", observe.script(probes, extra)]
        outs = self.run_both(cfg, mutate)
        obs = {}
        for name, o in outs.items():
            sections = observe.normalise(observe.parse(o.stdout), o.subst())
            obs[name] = {"run_rc": o.rc, **sections}
        return obs["runc"], obs["pyrunc"], outs

    def start_detached(self, runtime: str, config: dict[str, Any],
                       mutate: Mutator | None = None) -> tuple[str, int]:
        """create + start a long-running container; return (id, init pid)."""
        rt = self.rt[runtime]
        b = self.bundle(runtime, config, mutate)
        cid = rt.new_id("conf")
        rt("create", "--bundle", b.path, cid, check=True)
        rt("start", cid, check=True)
        return cid, rt.state(cid)["pid"]

    def wait_status(self, runtime: str, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.rt[runtime].state(cid)["status"]
            if seen == want:
                return
            time.sleep(0.02)
        raise AssertionError(f"{runtime}: {cid} is {seen}, never reached {want}")

    def leftovers(self, runtime: str) -> list[str]:
        """State directories and cgroups that outlive the containers of this runtime."""
        rt = self.rt[runtime]
        found = [f"state dir {os.path.join(rt.root, n)}" for n in _listdir(rt.root)]
        found += [f"cgroup {p}" for cid in rt.ids for p in cgroup_leftovers(cid)]
        return found

    def cleanup(self) -> list[str]:
        problems = []
        for name, rt in self.rt.items():
            problems += [f"{name}: {x}" for x in rt.cleanup()]
            problems += [f"{name}: {x}" for x in self.leftovers(name)]
            shutil.rmtree(rt.root, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problems


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def popen_run(rt: Runtime, bundle: str, cid: str, out: Any) -> subprocess.Popen:
    """`run` in the background with stdio on a file (never a pipe, see tests/rig.py)."""
    return subprocess.Popen([rt.binary, "--root", rt.root, *rt.extra, "run", "--bundle", bundle,
                             cid], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
