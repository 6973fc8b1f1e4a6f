"""containerd 1.6 with its CRI plugin, private to one test session (or one benchmark): its
own root, state, sockets, config, runtime roots, CNI conf/bin/IPAM dirs, bridge and cgroup
parent, with two RuntimeClass handlers side by side: `pyrunc` and `runc`, both through
containerd-shim-runc-v2 (`BinaryName`). Started by argv, stopped by pid; teardown removes
every pod, then checks and removes what is left (shims, mounts, netns, cgroups, bridge).

The daemon plumbing (Daemon, run, unmount_and_remove) is the engine suites'."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import time
import uuid
from typing import Any

from conformance.engines.procs import Daemon, unmount_and_remove

HANDLERS = ("pyrunc", "runc")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def cni_bin_source() -> str | None:
    """The directory holding Debian's containernetworking-plugins (all of CNI_PLUGINS)."""
    for d in CNI_DIRS:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in CNI_PLUGINS):
            return d
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route on the host covers (the pod network)."""
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True).stdout
    used = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 in 10.200.0.0/13 for the pod network")


def netns_names() -> set[str]:
    try:
        return set(os.listdir("/var/run/netns"))
    except FileNotFoundError:
        return set()


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _read_ip_forward() -> str | None:
    try:
        with open(IP_FORWARD) as f:
            return f.read().strip()
    except OSError:
        return None


def pids_with_arg(arg: str) -> list[int]:
    """Processes whose command line contains `arg` as one argument (our shims)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            found.append(int(d))
    return found


class CRIContainerd:
    """One containerd with the CRI plugin; `handlers` maps handler name -> runtime binary."""

    def __init__(self, top: str, bins: dict[str, str], handlers: dict[str, str],
                 sandbox_image: str, registry_host: str | None) -> None:
        self.top = top
        self.bins = bins
        self.handlers = handlers
        self.sandbox_image = sandbox_image
        self.registry_host = registry_host
        self.sock = os.path.join(top, "containerd.sock")
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"crip{tag}"
        self.net_name = f"pyrunc-cri-{tag}"
        self.subnet = free_subnet()
        self.cgroup_parent = f"/pyrunc-cri-{tag}"
        self.cni_conf = os.path.join(top, "cni", "net.d")
        self.cni_bin = os.path.join(top, "cni", "bin")
        self.ipam_dir = os.path.join(top, "cni", "ipam")
        self.log_root = os.path.join(top, "pod-logs")
        self.daemon: Daemon | None = None
        self.client: Any = None
        self.wrappers: dict[str, Any] = {}  # handler -> argv-logging wrapper, when used
        self.netns_before = netns_names()
        # the CNI bridge plugin turns ip_forward on for a gateway bridge: put it back after
        self.ip_forward_before = _read_ip_forward()

    def runtime_root(self, handler: str) -> str:
        """The `--root` containerd-shim-runc-v2 passes the handler's binary."""
        return os.path.join(self.top, "runtime-root", handler)

    def runtime_states(self, handler: str) -> list[str]:
        """Container ids the handler's binary still keeps state for (<root>/k8s.io/<id>)."""
        root = os.path.join(self.runtime_root(handler), "k8s.io")
        return sorted(os.listdir(root)) if os.path.isdir(root) else []

    # --- configuration ---------------------------------------------------------------------

    def _write_cni(self, src_bin: str) -> None:
        os.makedirs(self.cni_conf)
        os.makedirs(self.cni_bin)
        for p in CNI_PLUGINS:
            os.symlink(os.path.join(src_bin, p), os.path.join(self.cni_bin, p))
        hosts = list(self.subnet.hosts())
        conflist = {
            "cniVersion": "1.0.0",
            "name": self.net_name,
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                          "ranges": [[{"subnet": str(self.subnet), "gateway": str(hosts[0]),
                                       "rangeStart": str(hosts[1])}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        with open(os.path.join(self.cni_conf, "10-pyrunc-cri.conflist"), "w") as f:
            json.dump(conflist, f, indent=1)

    def _write_hosts_toml(self) -> str:
        """containerd's registry hosts dir: the local registry speaks plain HTTP."""
        d = os.path.join(self.top, "certs.d")
        if self.registry_host:
            os.makedirs(os.path.join(d, self.registry_host))
            with open(os.path.join(d, self.registry_host, "hosts.toml"), "w") as f:
                f.write(f'server = "http://{self.registry_host}"\n\n'
                        f'[host."http://{self.registry_host}"]\n'
                        '  capabilities = ["pull", "resolve"]\n')
        else:
            os.makedirs(d)
        return d

    def config_toml(self, certs_d: str) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        runtimes = []
        for name, binary in self.handlers.items():
            runtimes.append(f"""
[{cri}.containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{self.runtime_root(name)}"
  SystemdCgroup = false
""")
        return f"""version = 2
root = "{self.top}/root"
state = "{self.top}/state"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.top}/opt"
[{cri}]
  sandbox_image = "{self.sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  max_container_log_line_size = 16384
  # never below containerd's own oom_score_adj: lowering it (the sandbox's -998) needs
  # CAP_SYS_RESOURCE, which a test host may lack
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.cni]
  bin_dir = "{self.cni_bin}"
  conf_dir = "{self.cni_conf}"
  max_conf_num = 1
[{cri}.registry]
  config_path = "{certs_d}"
{"".join(runtimes)}"""

    # --- life ------------------------------------------------------------------------------

    def start(self, client_factory) -> None:
        """Write the config, start containerd, wait until the CRI's Status reports
        RuntimeReady and NetworkReady. `client_factory(sock)` makes the CRI client."""
        src = cni_bin_source()
        if src is None:
            raise RuntimeError(f"CNI plugins {CNI_PLUGINS} not found in {CNI_DIRS}")
        self._write_cni(src)
        os.makedirs(self.log_root)
        for h in self.handlers:
            os.makedirs(self.runtime_root(h))
        cfg = os.path.join(self.top, "config.toml")
        with open(cfg, "w") as f:
            f.write(self.config_toml(self._write_hosts_toml()))
        self.daemon = Daemon("containerd", [self.bins["containerd"], "--config", cfg],
                             os.path.join(self.top, "containerd.log"))
        self.client = client_factory(self.sock)

        def ready() -> bool:
            if not os.path.exists(self.sock):
                return False
            try:
                conds = {c.type: c.status for c in self.client.status().status.conditions}
            except Exception:
                return False
            return conds.get("RuntimeReady", False) and conds.get("NetworkReady", False)

        self.daemon.wait_ready(ready, timeout=60)

    def shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes serving this containerd."""
        return [p for p in pids_with_arg(self.sock) if self._is_shim(p)]

    @staticmethod
    def _is_shim(pid: int) -> bool:
        try:
            return os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith(
                "containerd-shim")
        except OSError:
            return False

    def remove_all_pods(self) -> list[str]:
        problems = []
        try:
            pods = self.client.list_pods()
        except Exception as e:  # the daemon may be gone
            return [f"ListPodSandbox failed: {e}"]
        for p in pods:
            for call in (self.client.stop_pod, self.client.remove_pod):
                try:
                    call(p.id)
                except Exception as e:
                    problems.append(f"{call.__name__}({p.id[:12]}): {e}")
        return problems

    def teardown(self) -> list[str]:
        """Remove every pod, stop containerd by pid, and remove what it made; returns the
        problems (leftovers) found on the way."""
        problems: list[str] = []
        if self.daemon and self.daemon.proc.poll() is None:
            left = self.remove_all_pods()
            if left:
                problems += left
        if self.client is not None:
            self.client.close()
        if self.daemon:
            self.daemon.stop()
        deadline = time.monotonic() + 10
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.shim_pids():
            problems.append(f"shim {pid} still running: killed")
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for h in self.handlers:
            left = self.runtime_states(h)
            if left:
                problems.append(f"{h} state left in {self.runtime_root(h)}: {left}")
        new_ns = netns_names() - self.netns_before
        for ns in new_ns:
            if ns.startswith("cni-"):
                problems.append(f"netns {ns} left")
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        problems += self.remove_cgroup_parent()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self.ip_forward_before is not None and _read_ip_forward() != self.ip_forward_before:
            with open(IP_FORWARD, "w") as f:
                f.write(self.ip_forward_before)
        problems += unmount_and_remove(self.top)
        return problems

    def cgroup_dirs(self, rel: str) -> list[str]:
        """`rel` in each v1 hierarchy where it exists."""
        out = []
        for ctrl in sorted(os.listdir("/sys/fs/cgroup")):
            base = os.path.join("/sys/fs/cgroup", ctrl)
            if os.path.islink(base):
                continue
            path = os.path.join(base, rel.lstrip("/"))
            if os.path.isdir(path):
                out.append(path)
        return out

    def remove_cgroup_parent(self) -> list[str]:
        """Our pod cgroup parents are made by the runtimes (as parents of the containers'
        cgroups) and are ours to remove, deepest first; a container cgroup left is a leak."""
        problems = []
        for top in self.cgroup_dirs(self.cgroup_parent):
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                depth = dirpath[len(top):].count("/")
                if depth >= 2:
                    problems.append(f"cgroup left: {dirpath}")
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    problems.append(f"cgroup {dirpath} not removed: {e.strerror}")
        return problems

