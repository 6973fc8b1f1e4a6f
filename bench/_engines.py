"""The engines as the benchmarks run them, on conformance/engines/drivers.py's daemons: a
containerd with one namespace per runtime under test, a dockerd with one --add-runtime per
runtime and a cgroup parent of our own, the busybox image they load, and the teardown that
says what a runtime left behind (state, cgroups, crun's residue under the hidden cgroup2)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from conformance.engines.bundles import build_busybox_archive
from conformance.engines.drivers import (
    CTR_IMAGE,
    DOCKER,
    UNIFIED,
    ContainerdDaemon,
    DockerDaemon,
)
from conformance.engines.procs import DaemonError, Result, run, which
from conformance.engines.wrapper import Wrapper

DOCKER_IMAGE = "busybox"


@dataclass
class Runtime:
    """A runtime under test: `path` is what the engines exec (--runc-binary, --add-runtime),
    `docker_name` its name in dockerd's runtime table."""

    name: str
    path: str
    docker_name: str


def build_image(top: str) -> str:
    """The engine suites' busybox image (bundles.build_busybox_archive) under top/img."""
    img = os.path.join(top, "img")
    os.makedirs(img)
    try:
        return build_busybox_archive(img, which("umoci"), which("skopeo"))
    except RuntimeError as e:
        raise SystemExit(f"bench: {e}") from None


def started(engine: ContainerdDaemon | DockerDaemon, timeout: float = 90) -> None:
    """Start a daemon driver; SystemExit with its log tail if it does not come up."""
    try:
        engine.start(timeout)
    except DaemonError as e:
        raise SystemExit(f"bench: {e}") from None


def remove_cgroup_parent(parent: str) -> tuple[list[str], list[str]]:
    """Remove /sys/fs/cgroup/<ctrl>/<parent> (ours alone) in every hierarchy. Returns (child
    cgroups the runtimes left behind, problems)."""
    left, problems = [], []
    for ctrl in sorted(os.listdir("/sys/fs/cgroup")):
        path = os.path.join("/sys/fs/cgroup", ctrl, parent)
        if os.path.islink(os.path.join("/sys/fs/cgroup", ctrl)) or not os.path.isdir(path):
            continue
        for dirpath, dirnames, _ in os.walk(path, topdown=False):
            for d in dirnames:
                left.append(os.path.join(dirpath, d))
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError as e:
                    problems.append(f"{os.path.join(dirpath, d)}: {e}")
        try:
            os.rmdir(path)
        except OSError as e:
            problems.append(f"{path}: {e}")
    return left, problems


def remove_hidden_unified(parents: list[str]) -> tuple[int, list[str]]:
    """crun, wrapped, writes <unified>/<parent>/<id>/cgroup.procs as plain files on the
    /sys/fs/cgroup tmpfs, hidden under the host's cgroup2 mount. Remove our parents there from
    a private mount namespace. Returns (how many container dirs were there, problems)."""
    names = " ".join(f"'{p}'" for p in parents)
    script = (f'umount {UNIFIED} && cd {UNIFIED} && n=0 && for p in {names}; do '
              'if [ -d "$p" ]; then n=$((n + $(ls -A "$p" | wc -l))); rm -rf -- "$p"; fi; '
              'done && echo "$n" && for p in ' + names + '; do [ -e "$p" ] && echo "left $p"; '
              'done; true')
    p = subprocess.run([which("unshare"), "-m", which("sh"), "-c", script],
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.split()
    if p.returncode != 0 or not lines or not lines[0].isdigit() or "left" in lines:
        return 0, [f"crun residue under hidden {UNIFIED}: {(p.stdout + p.stderr).strip()}"]
    return int(lines[0]), []


class Containerd:
    """containerd for ctr: one namespace per runtime, so the shim's runtime root
    (/run/containerd/runc/<ns>, shared by every containerd on the host) and the cgroup parent
    (/<ns>) are ours alone and per runtime."""

    def __init__(self, top: str, tag: str, runtimes: list[Runtime]) -> None:
        self.top = top
        self.engine = ContainerdDaemon(top, which("containerd"), which("ctr"))
        self.tag = tag
        self.ns = {rt.name: f"{tag}-{rt.name}" for rt in runtimes}
        self.runtimes = {rt.name: rt for rt in runtimes}
        self.residue = 0

    def start(self, archive: str) -> None:
        os.makedirs(self.top)
        started(self.engine)
        for ns in self.ns.values():
            r = run(self.argv(ns, "images", "import", archive), timeout=180)
            if r.rc != 0:
                raise SystemExit(f"bench: ctr images import failed:\n{r!r}")

    def argv(self, ns: str, *args: str) -> list[str]:
        return self.engine.ctr_argv(ns, *args)

    def run_argv(self, rt: Runtime, cid: str) -> list[str]:
        return self.argv(self.ns[rt.name], "run", "--rm", "--runc-binary", rt.path, CTR_IMAGE,
                         cid, "true")

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.engine.running():
            for ns in self.ns.values():
                r = run(self.argv(ns, "task", "ls", "-q"), timeout=30)
                for cid in r.out.split():
                    problems.append(f"ctr task left in {ns}: {cid}")
                    run(self.argv(ns, "task", "kill", "-a", "-s", "SIGKILL", cid), timeout=30)
                    time.sleep(0.5)
                    run(self.argv(ns, "task", "delete", "-f", cid), timeout=30)
                r = run(self.argv(ns, "container", "ls", "-q"), timeout=30)
                for cid in r.out.split():
                    problems.append(f"ctr container left in {ns}: {cid}")
                    run(self.argv(ns, "container", "delete", cid), timeout=30)
        self.engine.stop()
        for name, ns in self.ns.items():
            root = f"/run/containerd/runc/{ns}"
            if os.path.isdir(root):
                for cid in os.listdir(root):
                    problems.append(f"{name} state left in {root}: {cid}")
                    run([self.runtimes[name].path, "--root", root, "delete", "--force", cid],
                        timeout=30)
                try:
                    os.rmdir(root)
                except OSError as e:
                    problems.append(f"{root}: {e}")
            left, probs = remove_cgroup_parent(ns)
            problems += [f"cgroup left by {name} (removed): {p}" for p in left] + probs
        self.residue, probs = remove_hidden_unified(list(self.ns.values()))
        return problems + probs


class Dockerd:
    """dockerd with one --add-runtime per runtime and a cgroup parent of our own."""

    def __init__(self, top: str, tag: str, runtimes: list[Runtime],
                 checks: dict[str, Wrapper]) -> None:
        self.top = top
        self.checks = checks
        self.cgroup_parent = f"{tag}-docker"
        self.runtimes = runtimes
        table = {rt.docker_name: rt.path for rt in runtimes}
        table.update({f"{name}-chk": w.path for name, w in checks.items()})
        self.engine = DockerDaemon(top, table, cgroup_parent=self.cgroup_parent)
        self.env = self.engine.env
        self.residue = 0

    def start(self, archive: str) -> None:
        os.makedirs(self.top)
        started(self.engine)
        r = self.docker("load", "-i", archive, timeout=180)
        if r.rc != 0:
            raise SystemExit(f"bench: docker load failed:\n{r!r}")

    def docker(self, *args: str, timeout: float = 60) -> Result:
        return self.engine.docker(*args, timeout=timeout)

    def run_argv(self, rt: Runtime, runtime_name: str | None = None) -> list[str]:
        return [DOCKER, "run", "--rm", "--network", "none", "--runtime",
                runtime_name or rt.docker_name, DOCKER_IMAGE, "true"]

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.engine.running():
            r = self.docker("ps", "-aq", "--no-trunc")
            for cid in r.out.split():
                problems.append(f"docker container left: {cid}")
                self.docker("rm", "-f", cid, timeout=60)
        self.engine.stop()  # and the containerd it started, if it outlived it
        # dockerd 20.10 gives every runtime the same root, <exec-root>/runtime-runc/moby; a
        # container left there (only after a failure) is force-deleted by whichever of the
        # runtimes succeeds.
        moby = os.path.join(self.top, "exec", "runtime-runc", "moby")
        if os.path.isdir(moby):
            for cid in os.listdir(moby):
                problems.append(f"runtime state left in {moby}: {cid}")
                for rt in self.runtimes:
                    if os.path.exists(os.path.join(moby, cid)):
                        run([rt.path, "--root", moby, "delete", "--force", cid], timeout=30)
        left, probs = remove_cgroup_parent(self.cgroup_parent)
        # dockerd's BuildKit keeps an empty <parent>/buildkit cgroup of its own: not a leak
        problems += [f"cgroup left (removed): {p}" for p in left
                     if os.path.basename(p) != "buildkit"] + probs
        self.residue, probs = remove_hidden_unified([self.cgroup_parent])
        return problems + probs
