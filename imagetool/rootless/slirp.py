"""User-mode networking for rootless containers: slirp4netns (Debian package slirp4netns).

Why slirp4netns and not pasta: it is what this host's Debian ships and podman's long-time
rootless default, needs nothing but the container's pid, and forwards ports through its API
socket (add_hostfwd) without any privilege; pasta (package passt) is faster but is not
installed here. The container gets tap0 (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) and
outbound connectivity; the host's loopback stays out of reach (--disable-host-loopback).

One Slirp per container, owned by the monitor: `start(pid, bindings)` runs slirp4netns for
the container's network namespace and publishes `-p` bindings; `close()` ends it (closing
its exit fd, then by pid) and removes its socket directory; `stop()` only tells it to end,
so the monitor can clean up while it exits. A slirp4netns with published ports is waited
for; one without may still be finishing its exit (see close()) when the monitor ends."""

from __future__ import annotations

import os

from imagetool.errors import ImagetoolError

# The monitor imports this module for every container (to ask wanted()): what only a
# slirp4netns container needs (subprocess alone is ~3 ms) is imported where it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

READY_TIMEOUT = 10.0
GUEST_ADDR = "10.0.2.100"
TUN = "/dev/net/tun"


class SlirpError(ImagetoolError):
    pass


def _mode(path: str) -> str:
    try:
        return f"mode {os.stat(path).st_mode & 0o7777:04o} on the host"
    except OSError as e:
        return e.strerror or "missing"


def _free_port(addr: str, proto: str) -> int:
    import socket
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(fam, kind) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for child `pid` to end (woken at its exit through a pidfd, not
    by polling); True when it has (it is left for the caller to reap)."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True  # already reaped
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


class Slirp:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_w = -1
        self.dir = ""
        self.ports: list[dict[str, Any]] = []

    def start(self, pid: int, bindings: list[dict[str, Any]]) -> None:
        import select
        import shutil
        import subprocess
        import tempfile
        exe = shutil.which("slirp4netns")
        if exe is None:
            raise SlirpError("slirp4netns not found: install Debian's slirp4netns package "
                             "(or run with --network none)")
        if not os.access(TUN, os.R_OK | os.W_OK):
            raise SlirpError(f"slirp4netns needs {TUN} readable and writable by this user "
                             f"({_mode(TUN)}): as root, chmod 0666 {TUN} (Debian's default), "
                             "or run with --network none")
        self.dir = tempfile.mkdtemp(prefix="imagetool-slirp-")
        api = os.path.join(self.dir, "api.sock")
        ready_r, ready_w = os.pipe()
        exit_r, self.exit_w = os.pipe()
        os.set_inheritable(self.exit_w, False)
        log = open(os.path.join(self.dir, "slirp.log"), "wb")  # noqa: SIM115 - closed below
        try:
            self.proc = subprocess.Popen(
                [exe, "--configure", "--mtu=65520", "--disable-host-loopback",
                 f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", f"--api-socket={api}",
                 str(pid), "tap0"], pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        finally:
            log.close()
            os.close(ready_w)
            os.close(exit_r)
        try:
            ok, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
            if not ok or os.read(ready_r, 1) != b"1":
                raise SlirpError(f"slirp4netns did not get ready: {self._log_tail()}")
        finally:
            os.close(ready_r)
        for b in bindings:
            self._publish(api, b)

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "slirp.log"), "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return " | ".join(lines[-4:]) if lines else "no message"

    def _publish(self, api: str, b: dict[str, Any]) -> None:
        import json
        import socket
        addr = b.get("HostIp") or "0.0.0.0"
        port = int(b.get("HostPort") or 0) or _free_port(addr, b["Proto"])
        req = {"execute": "add_hostfwd", "arguments": {
            "proto": b["Proto"], "host_addr": addr, "host_port": port,
            "guest_addr": GUEST_ADDR, "guest_port": int(b["ContainerPort"])}}
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(api)
            s.sendall(json.dumps(req).encode())
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        got = json.loads(reply or b"{}")
        if "error" in got or "return" not in got:
            desc = (got.get("error") or {}).get("desc") or reply.decode(errors="replace")
            raise SlirpError(f"-p {addr}:{port}:{b['ContainerPort']}/{b['Proto']}: {desc}")
        self.ports.append(dict(b, HostIp=addr, HostPort=port))

    def stop(self) -> None:
        """Tell slirp4netns to end (its exit fd closes); close() waits for it."""
        if self.exit_w >= 0:
            try:
                os.close(self.exit_w)
            except OSError:
                pass
            self.exit_w = -1

    def close(self) -> None:
        """End slirp4netns and remove its socket directory. With published ports, wait for
        its end (its listening sockets must be gone when `stop` returns; 5 s, then SIGKILL);
        without, only make sure it ends (SIGTERM besides the exit fd) and do not wait: its
        exit closes the tap, which waits an RCU grace period (~20 ms) no one needs, and
        whoever inherits it (init, once the monitor is gone) reaps it."""
        import shutil
        self.stop()
        if self.proc is not None:
            # poll first: the monitor (a subreaper) may have reaped it, and its pid be reused
            if self.proc.poll() is None:
                if not self.ports:
                    self.proc.terminate()
                elif not _exited(self.proc.pid, 5.0):
                    self.proc.kill()
            if self.ports or self.proc.returncode is not None:
                self.proc.wait()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


def wanted(mode: str) -> bool:
    """slirp4netns for --network slirp4netns, and for the default network when rootless."""
    if mode == "slirp4netns":
        return True
    from imagetool.rootless.paths import rootless
    return mode == "bridge" and rootless()
