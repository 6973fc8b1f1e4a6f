"""Namespaces for containers to join by path: each held by an `unshare ... sleep` process
that the test started and kills by pid (with --kill-child, its forked child goes too).

A pid or time namespace only takes children, so its holder forks (`unshare --fork`) and the
path to join is the holder's /proc/PID/ns/pid_for_children (time_for_children), as
runtime-tools' linux_ns_path validation does it. A user namespace gets a 0:0:65536 mapping
written by us (we are root): container root stays host root, the rootfs stays reachable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

# linux.namespaces type -> (name in /proc/PID/ns, unshare flags, path suffix)
KINDS = {
    "ipc": ("ipc", ["--ipc"], ""), "uts": ("uts", ["--uts"], ""),
    "network": ("net", ["--net"], ""), "cgroup": ("cgroup", ["--cgroup"], ""),
    "mount": ("mnt", ["--mount", "--propagation", "private"], ""),
    "pid": ("pid", ["--pid", "--fork", "--kill-child"], "_for_children"),
    "time": ("time", ["--time", "--fork", "--kill-child"], "_for_children"),
    "user": ("user", ["--user"], ""),
}
NS_NAMES = ("user", "ipc", "uts", "net", "pid", "cgroup", "time", "mnt")


def kernel_namespaces() -> list[str]:
    """The NS_NAMES this kernel has."""
    return [n for n in NS_NAMES if os.path.exists(f"/proc/self/ns/{n}")]


def unshare_lacks(nstype: str) -> str | None:
    """Why this host can't hold a namespace of that type, or None."""
    fname, flags, _ = KINDS[nstype]
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    if not os.path.exists(f"/proc/self/ns/{fname}"):
        return f"this kernel has no {nstype} namespace"
    p = subprocess.run(["unshare", *flags, "true"], capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        return f"unshare {' '.join(flags)} fails here: {p.stderr.strip()}"
    return None


@dataclass
class Holder:
    nstype: str
    proc: subprocess.Popen
    path: str = ""  # what a config's linux.namespaces[].path names

    @property
    def link(self) -> str:
        return os.readlink(self.path)


@dataclass
class Holders:
    made: list[Holder] = field(default_factory=list)

    def new(self, nstype: str, timeout: float = 10) -> Holder:
        fname, flags, suffix = KINDS[nstype]
        proc = subprocess.Popen(["unshare", *flags, "sleep", "300"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h = Holder(nstype, proc, f"/proc/{proc.pid}/ns/{fname}{suffix}")
        self.made.append(h)
        mine = os.readlink(f"/proc/self/ns/{fname}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = os.readlink(h.path) != mine and (not suffix or _children(proc.pid))
            except OSError:
                ready = False
            if ready:
                break
            if proc.poll() is not None:
                raise AssertionError(f"unshare {flags} exited with {proc.returncode}")
            time.sleep(0.02)
        else:
            raise AssertionError(f"unshare {flags}: no new {nstype} namespace in {timeout}s")
        if nstype == "user":
            for f in ("uid_map", "gid_map"):
                with open(f"/proc/{proc.pid}/{f}", "w") as fh:
                    fh.write("0 0 65536\n")
        return h

    def cleanup(self) -> None:
        for h in self.made:
            if h.proc.poll() is None:
                h.proc.kill()  # --kill-child takes the forked sleep along
            h.proc.wait(timeout=20)


def _children(pid: int) -> bool:
    """Has `pid` a child yet? (/proc/PID/task/PID/children needs CONFIG_PROC_CHILDREN.)"""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().split())
    except FileNotFoundError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rpartition(")")[2].split()[1]) == pid:
                        return True
            except (OSError, ValueError, IndexError):
                continue
    return False
