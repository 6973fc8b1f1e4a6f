"""Pods and containers for the CRI tests, made as kubelet makes them (PodSandboxConfig,
ContainerConfig), with a per-test record of everything made so the teardown removes it and
then checks nothing leaked: the pods' shims, netns, mounts and container cgroups."""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from conformance.cri.client import CRIClient, pb
from conformance.cri.cluster import CRIContainerd, netns_names, pids_with_arg
from conformance.engines.procs import mounts_under

# What kubelet puts in every unprivileged container's security context (containerd takes
# these lists as they come: an empty list would mean nothing masked).
MASKED_PATHS = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware")
READONLY_PATHS = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger")


@dataclass
class Pod:
    id: str
    handler: str
    config: Any
    uid: str
    log_dir: str
    containers: list[str] = field(default_factory=list)

    @property
    def cgroup_rel(self) -> str:
        return self.config.linux.cgroup_parent


def ns_options(pid: str = "POD") -> Any:
    return pb.NamespaceOption(network=pb.POD, ipc=pb.POD, pid=getattr(pb, pid))


class Pods:
    """What one test made in the shared containerd, and its teardown."""

    def __init__(self, cluster: CRIContainerd, images: dict[str, str]) -> None:
        self.cluster = cluster
        self.cri: CRIClient = cluster.client
        self.images = images
        self.made: list[Pod] = []

    def run(self, handler: str, name: str = "pod", privileged: bool = False,
            pid: str = "POD") -> Pod:
        """RunPodSandbox with `handler`; the pod's cgroup parent is private to the session."""
        uid = uuid.uuid4().hex[:12]
        log_dir = os.path.join(self.cluster.log_root, f"{name}-{uid}")
        os.makedirs(log_dir)
        sec = pb.LinuxSandboxSecurityContext(namespace_options=ns_options(pid),
                                             privileged=privileged)
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=f"{name}-{uid}", uid=uid, namespace="cri-test"),
            hostname=name, log_directory=log_dir, labels={"test": name},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=f"{self.cluster.cgroup_parent}/pod{uid}", security_context=sec))
        pod_id = self.cri.run_pod(cfg, handler)
        pod = Pod(pod_id, handler, cfg, uid, log_dir)
        self.made.append(pod)
        return pod

    def container_config(self, pod: Pod, name: str, args: list[str] | None = None, *,
                         command: list[str] | None = None, image: str = "app",
                         resources: Any = None, security: Any = None,
                         envs: dict[str, str] | None = None) -> Any:
        sec = security if security is not None else pb.LinuxContainerSecurityContext()
        if not sec.privileged and not sec.masked_paths:  # kubelet sends its defaults
            sec.masked_paths.extend(MASKED_PATHS)
            sec.readonly_paths.extend(READONLY_PATHS)
        if not sec.HasField("namespace_options"):
            sec.namespace_options.CopyFrom(pod.config.linux.security_context.namespace_options)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.images[image]),
            command=command or [], args=args or [], log_path=f"{name}/0.log",
            envs=[pb.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
            labels={"container": name},
            linux=pb.LinuxContainerConfig(resources=resources, security_context=sec))

    def create(self, pod: Pod, name: str, args: list[str] | None = None, **kw: Any) -> str:
        cid = self.cri.create(pod.id, self.container_config(pod, name, args, **kw), pod.config)
        pod.containers.append(cid)
        return cid

    def start(self, pod: Pod, name: str, args: list[str] | None = None, **kw: Any) -> str:
        cid = self.create(pod, name, args, **kw)
        self.cri.start(cid)
        return cid

    def status(self, cid: str) -> Any:
        return self.cri.container_status(cid).status

    def wait_exited(self, cid: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.state == pb.CONTAINER_EXITED or time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def pid(self, cid: str) -> int:
        """The container's init pid on the host (ContainerStatus verbose info)."""
        info = self.cri.container_status(cid, verbose=True).info["info"]
        return int(json.loads(info)["pid"])

    def netns(self, pod: Pod) -> str:
        """The path of the pod's network namespace (PodSandboxStatus verbose info)."""
        info = json.loads(self.cri.pod_status(pod.id, verbose=True).info["info"])
        return next((n.get("path", "") for n in info["runtimeSpec"]["linux"]["namespaces"]
                     if n["type"] == "network"), "")

    def log_lines(self, pod: Pod, name: str) -> list[tuple[str, str, str]]:
        """The CRI log file of container `name`: (stream, tag, text) per line."""
        out = []
        with open(os.path.join(pod.log_dir, name, "0.log"), errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 3)
                if len(parts) == 4:
                    out.append((parts[1], parts[2], parts[3]))
        return out

    def remove(self, pod: Pod) -> list[str]:
        """StopPodSandbox + RemovePodSandbox, then the leak checks for this pod."""
        problems = []
        netns = ""
        try:
            netns = self.netns(pod)
        except Exception:
            pass
        for call in (self.cri.stop_pod, self.cri.remove_pod):
            try:
                call(pod.id)
            except Exception as e:
                problems.append(f"{call.__name__}({pod.id[:12]}): {e}")
        problems += self.leaks(pod, netns)
        return problems

    def leaks(self, pod: Pod, netns: str, wait: float = 15) -> list[str]:
        """What the removed pod left: polled for up to `wait` seconds (a shim exits a moment
        after RemovePodSandbox returns), then the pod's own cgroup parents are removed."""
        deadline = time.monotonic() + wait
        while (problems := self._left(pod, netns)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for d in self.cluster.cgroup_dirs(pod.cgroup_rel):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        problems.append(f"cgroup {d} not removed: {e.strerror}")
                        break
                    time.sleep(0.1)
            else:
                problems.append(f"cgroup {d} still busy")
        return problems

    def _left(self, pod: Pod, netns: str) -> list[str]:
        problems = []
        procs = pids_with_arg(pod.id)
        if procs:
            problems.append(f"processes of pod {pod.id[:12]} left: {procs}")
        ids = [pod.id, *pod.containers]
        left = [m for m in mounts_under(self.cluster.top) if any(i in m for i in ids)]
        if left:
            problems.append(f"mounts left: {left}")
        if netns and os.path.basename(netns) in netns_names():
            problems.append(f"netns left: {netns}")
        for d in self.cluster.cgroup_dirs(pod.cgroup_rel):
            kids = [k for k in os.listdir(d) if os.path.isdir(os.path.join(d, k))]
            if kids:
                problems.append(f"cgroups left in {d}: {kids}")
        stale = [c for c in self.cluster.runtime_states(pod.handler) if c in ids]
        if stale:
            problems.append(f"{pod.handler} state left: {stale}")
        return problems

    def teardown(self) -> list[str]:
        problems = []
        for pod in self.made:
            problems += self.remove(pod)
        return problems
