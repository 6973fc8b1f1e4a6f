"""How each engine is started and driven, for the engine suites and the benchmarks alike:
a private containerd (ctr), a private dockerd 20.10, podman with its own config files, and
the wrapper crun needs on a hybrid cgroup host. Everything lives under one scratch dir with
unix sockets only; daemons are stopped by pid. The argv-logging pyrunc wrapper is
wrapper.py; processes, pseudo-terminals and mounts are procs.py; busybox is bundles.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from conformance.engines.procs import (
    Daemon,
    Result,
    cgroup_parents_present,
    remove_cgroup_parents,
    run,
    stop_recorded_pid,
    unmount_and_remove,
    which,
)

UNIFIED = "/sys/fs/cgroup/unified"
DOCKER = "/usr/bin/docker"  # the docker.io 20.10 client; /usr/local/bin/docker is newer
CTR_IMAGE = "docker.io/library/busybox:latest"
PODMAN_CGROUP_PARENTS = ("libpod_parent", "libpod_parent/conmon")  # podman's cgroupfs parents

_CONTAINERD_CONFIG = """version = 2
root = "{top}/root"
state = "{top}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{top}/opt"
"""


class ContainerdDaemon:
    """containerd 1.6 with root, state, opt dir, config and socket under `top`, CRI off.
    containerd-shim-runc-v2 keeps each runtime's state under /run/containerd/runc/<ns>,
    shared by every containerd on the host: use namespaces of your own."""

    def __init__(self, top: str, containerd: str, ctr: str) -> None:
        self.top = top
        self.containerd = containerd
        self.ctr = ctr
        self.sock = os.path.join(top, "containerd.sock")
        self.daemon: Daemon | None = None

    def start(self, timeout: float = 60) -> Daemon:
        """Write the config, start containerd, wait until `ctr version` answers."""
        os.makedirs(self.top, exist_ok=True)
        cfg = os.path.join(self.top, "config.toml")
        with open(cfg, "w") as f:
            f.write(_CONTAINERD_CONFIG.format(top=self.top, sock=self.sock))
        self.daemon = Daemon("containerd", [self.containerd, "--config", cfg],
                             os.path.join(self.top, "containerd.log"))
        self.daemon.wait_ready(lambda: os.path.exists(self.sock)
                               and run(self.ctr_argv("default", "version"), timeout=10).rc == 0,
                               timeout)
        return self.daemon

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.running()

    def ctr_argv(self, ns: str, *args: str) -> list[str]:
        return [self.ctr, "-a", self.sock, "-n", ns, *args]

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()


class DockerDaemon:
    """dockerd 20.10 with data root, exec root, pidfile, config and socket under `top`; no
    bridge, iptables or userland proxy; `runtimes` (name -> path) added with --add-runtime;
    an optional cgroup parent. `env` points a docker client at it."""

    def __init__(self, top: str, runtimes: Mapping[str, str], cgroup_parent: str = "",
                 dockerd: str = "", docker: str = DOCKER) -> None:
        self.top = top
        self.runtimes = dict(runtimes)
        self.cgroup_parent = cgroup_parent
        self.dockerd = dockerd or which("dockerd")
        self.client = docker
        self.sock = os.path.join(top, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=os.path.join(top, "client"))
        # dockerd 20.10 gives every runtime this root (containerd-shim-runc-v2's --root)
        self.runtime_root = os.path.join(top, "exec", "runtime-runc", "moby")
        self.daemon: Daemon | None = None

    def argv(self, config: str) -> list[str]:
        argv = [self.dockerd, "--config-file", config,
                "--data-root", os.path.join(self.top, "data"),
                "--exec-root", os.path.join(self.top, "exec"),
                "--pidfile", os.path.join(self.top, "docker.pid"),
                "-H", f"unix://{self.sock}"]
        if self.cgroup_parent:
            argv += ["--cgroup-parent", f"/{self.cgroup_parent}"]
        argv += ["--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                 "--userland-proxy=false"]
        for name, path in self.runtimes.items():
            argv += ["--add-runtime", f"{name}={path}"]
        return argv

    def start(self, timeout: float = 60) -> Daemon:
        """Write an empty daemon.json, start dockerd, wait until `docker version` answers."""
        os.makedirs(self.top, exist_ok=True)
        cfg = os.path.join(self.top, "daemon.json")
        with open(cfg, "w") as f:
            f.write("{}\n")
        self.daemon = Daemon("dockerd", self.argv(cfg), os.path.join(self.top, "dockerd.log"))
        self.daemon.wait_ready(lambda: os.path.exists(self.sock)
                               and self.docker("version", timeout=10).rc == 0, timeout)
        return self.daemon

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.running()

    def docker(self, *args: str, timeout: float = 60) -> Result:
        return run([self.client, *args], env=self.env, timeout=timeout)

    def stop(self) -> None:
        """Stop dockerd; if it did not stop the containerd it started, stop that one by the
        pid it recorded, after checking the process is ours (its command line names `top`)."""
        if self.daemon:
            self.daemon.stop()
            stop_recorded_pid(os.path.join(self.top, "exec", "containerd", "containerd.pid"),
                              self.top)


class Podman:
    """podman 4.3 (no daemon) with its own containers.conf, storage.conf and
    registries.conf under `top` (graph root, run root, tmp, volume and network dirs),
    cgroupfs, no network by default, and `--runtime runtime` on every command."""

    def __init__(self, top: str, podman: str, runtime: str) -> None:
        self.top = top
        self.podman_bin = podman
        self.runtime = runtime
        self.cgroups_before = cgroup_parents_present(PODMAN_CGROUP_PARENTS)
        conf = os.path.join(top, "containers.conf")
        storage = os.path.join(top, "storage.conf")
        registries = os.path.join(top, "registries.conf")
        # Settings conmon's exit command (`podman container cleanup`, run without this
        # environment) can't see must stay at their defaults relative to the graph root: a
        # custom static_dir would hide the container from it and every run would hang 20 s.
        with open(conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{top}/tmp"
volume_path = "{top}/volumes"
image_copy_tmp_dir = "{top}/tmp"
[network]
network_config_dir = "{top}/net"
""")
        with open(storage, "w") as f:
            f.write(f"""[storage]
driver = "overlay"
graphroot = "{top}/graph"
runroot = "{top}/run"
""")
        with open(registries, "w") as f:
            f.write("unqualified-search-registries = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        CONTAINERS_REGISTRIES_CONF=registries)

    def argv(self, *args: str) -> list[str]:
        return [self.podman_bin, "--runtime", self.runtime, *args]

    def podman(self, *args: str, timeout: float = 60) -> Result:
        return run(self.argv(*args), env=self.env, timeout=timeout)

    def remove_all(self) -> list[str]:
        """`podman rm -af -t 0` when any container exists; the ids that were there."""
        ids = self.podman("ps", "-aq", "--no-trunc").out.split()
        if ids:
            self.podman("rm", "-af", "-t", "0", timeout=120)
        return ids

    def cleanup(self) -> list[str]:
        """Remove the cgroup parents podman made (unless they were there before) and the
        whole `top`, unmounted first. Returns problems."""
        problems = remove_cgroup_parents(PODMAN_CGROUP_PARENTS, self.cgroups_before)
        return problems + unmount_and_remove(self.top)


CRUN_WRAPPER = """#!/bin/sh
# crun refuses this hybrid cgroup host: run it in a private mount namespace without cgroup2.
exec {unshare} -m {sh} -c '{umount} {unified} && exec {crun} "$@"' crun "$@"
"""


def crun_wrapper_text(crun: str = "") -> str:
    """The crun wrapper script; with crun="/bin/true", the probe that measures the wrapper
    alone."""
    return CRUN_WRAPPER.format(unshare=which("unshare"), sh=which("sh"), umount=which("umount"),
                               unified=UNIFIED, crun=crun or which("crun"))


WRAP_SCRIPT = f'umount {UNIFIED} && exec "$@"'


def wrap(argv: list[str]) -> list[str]:
    """argv run in a private mount namespace with the cgroup2 mount unmounted (crun's need)."""
    return [which("unshare"), "-m", which("sh"), "-c", WRAP_SCRIPT, "wrap", *argv]


def remove_crun_residue(tag: str) -> list[str]:
    """crun, with the cgroup2 mount unmounted, still makes <unified>/<id>/cgroup.procs as
    plain files on the /sys/fs/cgroup tmpfs, hidden under the host's cgroup2 mount; delete
    ours (ids start with tag) from a private mount namespace."""
    script = (f'umount {UNIFIED} && cd {UNIFIED} && for d in {tag}-*; do '
              '[ -d "$d" ] && rm -rf -- "$d"; done; ls -A | grep "^' + tag + '-" || true')
    p = subprocess.run([which("unshare"), "-m", which("sh"), "-c", script],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0 or p.stdout.strip():
        return [f"crun residue under {UNIFIED}: {(p.stdout + p.stderr).strip()}"]
    return []


def crun_raw_check(bundle: str, workdir: str) -> str:
    """One unwrapped `crun run`, to record why the wrapper is needed (its error text)."""
    root = os.path.join(workdir, "root-crun-raw")
    crun = which("crun")
    p = subprocess.run([crun, "--root", root, "run", "--bundle", bundle, "rawprobe"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    subprocess.run([crun, "--root", root, "delete", "--force", "rawprobe"],
                   capture_output=True, timeout=30)
    if p.returncode == 0:
        return "ok: crun runs here without the wrapper"
    return f"exit {p.returncode}: {(p.stderr or p.stdout).strip()}"
