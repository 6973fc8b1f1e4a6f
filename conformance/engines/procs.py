"""Process plumbing shared by the engine suites and the benchmarks (no pytest here): client
commands with bounded waits and output in files, a client on a pseudo-terminal, daemons
started by argv and stopped by pid, and the unmount-then-remove of a scratch tree."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Sequence

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DaemonError(RuntimeError):
    """A daemon exited or did not answer while starting; the message ends with its log."""


class Unavailable(RuntimeError):
    """This host lacks a tool or feature the helper needs (the message names it): tests skip,
    benchmarks stop with it."""


def which(name: str) -> str:
    """The absolute path of a program on PATH or the usual dirs; SystemExit naming it."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SEARCH_PATH)
    if not path:
        raise SystemExit(f"{name} not found (scripts/install.sh installs it)")
    return path


def write_exec(path: str, text: str) -> str:
    """Write an executable script; returns its path."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may wait a while for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Result:
    """A finished client command: argv, exit code, decoded output."""

    def __init__(self, argv: Sequence[str], rc: int, out: str, err: str = "") -> None:
        self.argv = list(argv)
        self.rc = rc
        self.out = out
        self.err = err

    def __repr__(self) -> str:
        return (f"$ {' '.join(self.argv)}\n-> rc={self.rc}\n--- stdout\n{self.out}"
                f"--- stderr\n{self.err}")


def run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60,
        input: bytes | None = None) -> Result:
    """Run a client command. Output goes to files, not pipes: daemonised helpers (conmon,
    shims) may inherit the client's stdio, and a pipe would then stay open for their life."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            p = subprocess.run(list(argv), env=env, stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL if input is None else None,
                               input=input, timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = -999
        out.seek(0)
        err.seek(0)
        o = out.read().decode(errors="replace")
        e = err.read().decode(errors="replace")
    if rc == -999:
        e += f"\n[timed out after {timeout}s]"
    return Result(argv, rc, o, e)


# The client's terminal size (rows, columns): unusual, so seeing it in the container proves the
# engine resized the container's pty after the client's.
PTY_SIZE = (33, 101)


def run_pty(argv: Sequence[str], env: dict[str, str] | None = None,
            timeout: float = 60) -> Result:
    """Run a client on a fresh pseudo-terminal (its controlling tty, PTY_SIZE) and collect what
    it writes there until it exits. Output is normalised: CR LF -> LF, NUL bytes dropped."""
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *PTY_SIZE, 0, 0))
            os.execvpe(argv[0], list(argv), env if env is not None else os.environ)
        finally:
            os._exit(127)
    buf = bytearray()
    deadline = time.monotonic() + timeout
    status = None
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                buf += data
            elif status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    # Drain what is left; grandchildren may still hold the slave open.
                    deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        os.close(master)
        if status is None:
            end = time.monotonic() + 10
            while status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                elif time.monotonic() > end:
                    os.kill(pid, signal.SIGKILL)
                    _, status = os.waitpid(pid, 0)
                else:
                    time.sleep(0.02)
    rc = -999 if timed_out else os.waitstatus_to_exitcode(status)
    out = bytes(buf).replace(b"\x00", b"").replace(b"\r\n", b"\n").replace(b"\r", b"")
    text = out.decode(errors="replace")
    if timed_out:
        text += f"\n[timed out after {timeout}s]"
    return Result(argv, rc, text)


class Daemon:
    """A daemon started by argv with its output in a log file, stopped by its pid."""

    def __init__(self, name: str, argv: Sequence[str], log: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._logf = open(log, "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def log_tail(self, lines: int = 25) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60) -> None:
        """Poll probe() until true; DaemonError if the daemon exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"{self.name} exited with {self.proc.returncode} while "
                                  f"starting:\n{self.log_tail()}")
            if probe():
                return
            time.sleep(0.1)
        raise DaemonError(f"{self.name} did not answer within {timeout}s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._logf.close()


def stop_recorded_pid(pidfile: str, owner_mark: str, timeout: float = 20) -> None:
    """Stop the process whose pid `pidfile` holds, only if its command line contains
    `owner_mark` (our private dir): SIGTERM, then SIGKILL after `timeout`."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if owner_mark.encode() not in f.read():
                return
    except (OSError, ValueError):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def mounts_under(top: str) -> list[str]:
    """Mount points at or below `top`, deepest first."""
    top = os.path.realpath(top)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == top or mp.startswith(top + "/"):
                found.append(mp)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_and_remove(top: str) -> list[str]:
    """Unmount everything under `top` (ours alone), then remove it. Returns problems."""
    problems = []
    for _ in range(3):
        left = mounts_under(top)
        if not left:
            break
        for mp in left:
            subprocess.run(["umount", "-R", mp], capture_output=True)
        for mp in mounts_under(top):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    left = mounts_under(top)
    if left:
        problems.append(f"still mounted under {top}: {left}")
    else:
        shutil.rmtree(top, ignore_errors=True)
    return problems


def short_tempdir(prefix: str) -> str:
    """A temp dir with a short path: unix socket paths must stay under 108 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def cgroup_parents_present(rels: Sequence[str]) -> set[str]:
    """Which of the cgroup paths `rels` (like "docker") exist now, in any hierarchy."""
    return {rel for rel in rels for ctrl in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(os.path.join("/sys/fs/cgroup", ctrl, rel))}


def remove_cgroup_parents(rels: Sequence[str], keep: set[str]) -> list[str]:
    """Remove the parent cgroups an engine made (deepest first, e.g. "libpod_parent/conmon"
    before "libpod_parent") unless they existed before (`keep`); a parent that still holds
    a cgroup is a problem, returned."""
    problems: list[str] = []
    for rel in sorted(rels, key=lambda r: -r.count("/")):
        if rel in keep:
            continue
        for ctrl in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", ctrl, rel)
            if os.path.islink(os.path.join("/sys/fs/cgroup", ctrl)) or not os.path.isdir(path):
                continue
            # the engine's helpers (podman's conmon) leave their cgroup a moment after the
            # engine's rm returns: EBUSY until then, so retry for a bounded while
            deadline = time.monotonic() + 15
            while True:
                try:
                    os.rmdir(path)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        problems.append(f"cgroup {path} not removed: {e.strerror}")
                        break
                    time.sleep(0.1)
    return problems
