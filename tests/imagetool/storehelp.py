"""Helpers shared by the store, archive, import and CLI tests: a busybox rootfs tarball
(conformance/engines/bundles.py's rootfs_tar), the imagetool CLI run against a private
--root, and a dockerd of our own (drivers.py's DockerDaemon: its own dirs and socket,
stopped by pid)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from conformance.engines.bundles import rootfs_tar  # noqa: F401 - the tests' name
from conformance.engines.drivers import DockerDaemon
from tests import hostcaps

IMAGETOOL = os.path.join(os.path.dirname(sys.executable), "imagetool")
DOCKERD = shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin")
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


def imagetool(root: str, *args: str, input: bytes | None = None, check: bool = True,
              timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    cmd = [IMAGETOOL, "--root", root, *args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr.decode()}")
    return p


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


class Dockerd:
    """A private dockerd: --data-root/--exec-root/pidfile/socket under one temp dir."""

    def __init__(self) -> None:
        # dockerd makes /docker in every cgroup hierarchy; ours to remove if it was not there
        self.cgroup_parents = [f"/sys/fs/cgroup/{c}/docker" for c in os.listdir("/sys/fs/cgroup")
                               if not os.path.islink(f"/sys/fs/cgroup/{c}")
                               and not os.path.isdir(f"/sys/fs/cgroup/{c}/docker")]
        self.dir = tempfile.mkdtemp(prefix="dk-")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.daemon: DockerDaemon | None = None
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}

    def start(self, timeout: float = 30) -> Dockerd:
        """Start it the engine suites' way (conformance/engines/drivers.py's DockerDaemon)."""
        self.daemon = DockerDaemon(self.dir, {}, dockerd=DOCKERD or "dockerd",
                                   docker=DOCKER or "docker")
        self.daemon.start(timeout)
        return self

    def docker(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        p = subprocess.run([DOCKER or "docker", *args], env=self.env, capture_output=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {args} failed: {p.stderr.decode()}")
        return p

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(os.path.join(self.dir, "dockerd.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def leftover_pids(self) -> list[int]:
        """Processes (dockerd's containerd, shims) still running with our dir in argv."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if self.dir.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                continue
        return pids

    def stop(self) -> list[int]:
        """Stop dockerd; return (after killing them) any processes it left behind."""
        if self.daemon is not None and self.daemon.daemon is not None:
            self.daemon.daemon.stop()
        # dockerd unmounts its overlay layers on the way out; anything left would pin the dir
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if self.dir in line]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        left = self.leftover_pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        for path in self.cgroup_parents:
            # deepest first: BuildKit leaves an empty /docker/buildkit below it
            for sub, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(sub)   # OSError (EBUSY) if a container cgroup were still in it
        return left


@contextlib.contextmanager
def running_dockerd() -> Any:
    """A private dockerd for a test module (skips when docker.io is missing or can't start
    here); stopped afterwards, and nothing it started may outlive it."""
    import pytest
    if not DOCKERD or not DOCKER:
        pytest.skip("docker.io (dockerd) is not installed")
    d = Dockerd()
    try:
        d.start()
    except RuntimeError as e:
        d.stop()
        pytest.skip(f"dockerd cannot start here: {e}")
    try:
        yield d
    finally:
        # containers first (docker run --rm and the tests' docker rm should have done it)
        ids = d.docker("ps", "-aq", check=False).stdout.decode().split()
        if ids:
            d.docker("rm", "-f", *ids, check=False)
        left = d.stop()
    assert not left, f"dockerd left processes behind: {left}"


def unmount_under(directory: str) -> None:
    """Lazily unmount whatever a failed test left mounted below `directory`, deepest first."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if directory in line]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def remove_containers(root: str) -> None:
    """`imagetool rm -f` every container of the store at `root`; a monitor that would not go
    is killed by its recorded pid."""
    from imagetool.run.records import Records
    recs = Records(root)
    for rec in recs.all():
        imagetool(root, "rm", "-f", rec["Id"], check=False, timeout=60)
    for rec in recs.all():
        pid = rec["State"].get("MonitorPid")
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_network(root: str, prefix: str, second_octet: int) -> Any:
    """Give the store at `root` its own bridge (PREFIX + random) and a random
    10.SECOND_OCTET.x.0/24 subnet that no host route overlaps, so parallel suites never share
    one and a host on 10/8 keeps its own; the bridge is deleted
    afterwards. Yields the bridge's name."""
    import secrets
    bridge = f"{prefix}{secrets.token_hex(3)}"
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "network.json"), "w") as f:
        json.dump({"bridge": bridge,
                   "subnet": hostcaps.free_subnet(second_octet)}, f)
    try:
        yield bridge
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
