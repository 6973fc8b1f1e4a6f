"""A private mount namespace whose /dev/net/tun is a node of our own, so slirp4netns run by
an ordinary user can (mode 0666) or cannot (mode 0600) open it whatever the host's own node's
mode is; the host is not changed. Shared by tests/imagetool/rootless and
bench/rootless_bench.py (no pytest here).

`tun_namespace(mode)` starts a holder (`unshare --mount --propagation private`) that mounts a
small tmpfs on a temp dir in its namespace, makes the tun node there (mknod c 10 200) and binds
it over /dev/net/tun; commands enter it with `prefix` (nsenter --mount). On exit the holder is
killed by pid (it also ends when the caller dies: it waits on a pipe) and the temp dir goes;
the namespace and its mounts go with its last process."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from conformance.engines.procs import Unavailable

TUN = "/dev/net/tun"
SCRIPT = """set -e
mount -t tmpfs -o mode=0755,size=16k itool-tun "$1"
mknod -m "$2" "$1/tun" c 10 200
mount --bind "$1/tun" /dev/net/tun
echo ready
read -r _ || true
"""


class TunHolderError(RuntimeError):
    """The namespace holder did not come up; the message ends with its stderr."""


@dataclass
class TunNs:
    """A running holder: its pid and the node's mode."""

    holder: int
    mode: int

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("nsenter", f"--mount=/proc/{self.holder}/ns/mnt", "--")

    def mnt(self) -> str:
        return os.readlink(f"/proc/{self.holder}/ns/mnt")


def host_has_tun() -> bool:
    """True when this host has a /dev/net/tun character device (the tun driver)."""
    try:
        return stat.S_ISCHR(os.stat(TUN).st_mode)
    except OSError:
        return False


def tun_mounted(pid: int) -> bool:
    """True when /dev/net/tun is a mount point in `pid`'s mount namespace (ours is, the
    host's is not)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return any(line.split()[4] == TUN for line in f)


def mounts_under(pid: int, top: str) -> list[str]:
    """The mount points in `pid`'s mount namespace that start with `top`."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [m for m in (line.split()[4] for line in f) if m.startswith(top)]


@contextlib.contextmanager
def tun_namespace(mode: int) -> Iterator[TunNs]:
    """The holder's namespace with a tun node of `mode`. Unavailable (naming it) when the host
    has no tun driver or the tools are missing; TunHolderError when the holder fails."""
    if not host_has_tun():
        raise Unavailable(f"no {TUN} on this host (no tun driver): slirp4netns cannot work here")
    for tool in ("unshare", "nsenter", "mknod"):
        if shutil.which(tool) is None:
            raise Unavailable(f"needs {tool} (util-linux/coreutils)")
    top = tempfile.mkdtemp(prefix="itool-tun-")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT, "sh",
         top, f"{mode:04o}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ok, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ok else b""
        if line != b"ready\n":
            proc.kill()
            err = proc.stderr.read().decode(errors="replace").strip()
            raise TunHolderError(f"tun namespace holder failed: {err or 'no answer'}")
        ns = TunNs(proc.pid, mode)
        if ns.mnt() == os.readlink("/proc/self/ns/mnt"):
            raise TunHolderError("tun namespace holder shares our mount namespace")
        yield ns
    finally:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        os.rmdir(top)
