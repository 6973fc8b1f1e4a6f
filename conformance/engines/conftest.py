"""Fixtures for the engine suites: a busybox image built without the internet, the argv-logging
wrapper around pyrunc, command and pseudo-terminal runners with bounded waits, and the daemon
plumbing (start by argv, wait for the socket, stop by pid, unmount and remove what it left).

`ENGINES_RUNTIME=/usr/bin/runc pytest conformance/engines` runs the same suites with another
runtime behind the wrapper, which checks the suite itself: every test passes and each strict
xfail for a pyrunc gap reports XPASS(strict)."""

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
import tarfile
import tempfile
import termios
import time
from collections.abc import Callable, Sequence

import pytest

from conformance.engines.wrapper import Wrapper
from tests.rig import PYRUNC, make_rootfs

BUSYBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def need(*binaries: str) -> dict[str, str]:
    """Absolute paths of binaries, or skip the module naming the missing ones."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin"
    found = {b: shutil.which(b, path=path) for b in binaries}
    missing = [b for b, p in found.items() if not p]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install.sh installs them)")
    return {b: p for b, p in found.items() if p}


def need_overlayfs() -> None:
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split() and shutil.which("modprobe"):
            subprocess.run(["modprobe", "overlay"], capture_output=True)
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split():
            pytest.skip("the kernel has no overlay filesystem (the engines' snapshotters need it)")


# --- commands -------------------------------------------------------------------------------

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

# Shell for the container: the engine resizes the pty after the process starts, so poll.
SIZE_PROBE = ('n=0; while [ $n -lt 100 ]; do s=$(stty size 2>&1); case "$s" in [1-9]*) break;; '
              'esac; n=$((n+1)); sleep 0.05; done; echo "size $s"')
SIZE_LINE = f"size {PTY_SIZE[0]} {PTY_SIZE[1]}"


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


def wait_for(cond: Callable[[], object], timeout: float, what: str,
              interval: float = 0.1) -> object:
    """Poll cond() until it returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def cgroup_of(pid: int, controller: str) -> str | None:
    """The host path of a process's cgroup in a v1 hierarchy."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller in ctrls.split(","):
                    return f"/sys/fs/cgroup/{controller}{path}"
    except FileNotFoundError:
        return None
    return None


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


# --- daemons --------------------------------------------------------------------------------

class Daemon:
    """A daemon started by argv with its output in a log file, stopped by its pid."""

    def __init__(self, name: str, argv: Sequence[str], log: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._logf = open(log, "ab")
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} while starting:\n"
                            f"{self.log_tail()}")
            if probe():
                return
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._logf.close()


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


# --- the busybox image and the wrapper ------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory) -> str:
    """A `docker load` archive of busybox:latest built here: busybox-static rootfs -> one layer
    -> OCI layout (umoci) -> docker-archive (skopeo). No registry, no internet."""
    tools = need("umoci", "skopeo")
    top = tmp_path_factory.mktemp("busybox-image")
    rootfs = make_rootfs(str(top / "rootfs"))
    layer = str(top / "layer.tar")
    with tarfile.open(layer, "w") as t:
        t.add(rootfs, arcname=".")
    layout = str(top / "layout")
    archive = str(top / "busybox.tar")
    steps = [
        [tools["umoci"], "init", "--layout", layout],
        [tools["umoci"], "new", "--image", f"{layout}:latest"],
        [tools["umoci"], "raw", "add-layer", "--image", f"{layout}:latest", layer],
        [tools["umoci"], "config", "--image", f"{layout}:latest", "--config.cmd", "/bin/sh",
         "--config.env", f"PATH={BUSYBOX_PATH}", "--config.workingdir", "/"],
        [tools["skopeo"], "copy", "--quiet", f"oci:{layout}:latest",
         f"docker-archive:{archive}:busybox:latest"],
    ]
    for argv in steps:
        r = run(argv, timeout=120)
        assert r.rc == 0, f"building the busybox image failed:\n{r!r}"
    return archive


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory) -> Wrapper:
    """pyrunc behind the argv-logging wrapper; one call log per test module.
    ENGINES_RUNTIME=/usr/bin/runc runs the suite against another runtime (to check the suite)."""
    real = os.environ.get("ENGINES_RUNTIME") or PYRUNC
    return Wrapper(str(tmp_path_factory.mktemp("pyrunc-calls")), real)


def check(r: Result, rc: int, wrapper: Wrapper | None = None, mark: int = 0,
          what: str = "") -> Result:
    """Assert an exit code; the failure message carries the client's output and every pyrunc
    call the engine made since `mark`."""
    if r.rc != rc:
        msg = f"{what}: expected rc={rc}\n{r!r}"
        if wrapper is not None:
            msg += "\n" + wrapper.report(mark)
        pytest.fail(msg, pytrace=False)
    return r


def assert_called(wrapper: Wrapper, mark: int, sub: str, cid: str, rc: int | None = 0) -> None:
    """pyrunc itself served `sub` for container `cid` (with exit code rc) since mark."""
    calls = [c for c in wrapper.since(mark, cid) if c.sub == sub]
    assert calls, f"the engine never called `pyrunc {sub}` for {cid}\n{wrapper.report(mark)}"
    if rc is not None:
        assert any(c.rc == rc for c in calls), \
            f"`pyrunc {sub}` did not exit {rc}\n{wrapper.report(mark)}"


LOOP_TERM_0 = 'trap "exit 0" TERM; while true; do sleep 0.1; done'


class EngineCLI:
    """What the docker and podman suites share: an engine's client with its environment,
    driving pyrunc through the argv-logging wrapper; subclasses say how argv is made."""

    name = "engine"

    def __init__(self, top: str, bins: dict[str, str], wrapper: Wrapper) -> None:
        self.top = top
        self.bins = bins
        self.wrapper = wrapper
        self.ids: set[str] = set()
        self.env = dict(os.environ)

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    def run_argv(self, *args: str) -> list[str]:
        return self.argv("run", *args)

    def cli(self, *args: str, timeout: float = 60) -> Result:
        return run(self.argv(*args), env=self.env, timeout=timeout)

    def start_container(self, *args: str) -> str:
        """`<engine> run -d ... <args>`: returns the full id, with the container running."""
        mark = self.wrapper.mark()
        r = check(run(self.run_argv("-d", *args), env=self.env), 0, self.wrapper, mark,
                  f"{self.name} run -d")
        cid = r.out.strip().splitlines()[-1]
        self.ids.add(cid)
        assert self.inspect(cid)["State"]["Running"] is True
        return cid

    def inspect(self, cid: str) -> dict:
        import json
        r = self.cli("inspect", cid)
        assert r.rc == 0, repr(r)
        return json.loads(r.out)[0]


def check_exec(e: EngineCLI) -> tuple[Result, list, list]:
    """`<engine> exec` plain (exit code, stdout, stderr), with -u/-w/-e, and with -t (a real
    pty of the right size): the plain result and the pyrunc exec calls of the plain and the
    -t exec, for the engine-specific checks."""
    cid = e.start_container("busybox", "sh", "-c", LOOP_TERM_0)
    mark = e.wrapper.mark()
    plain = e.cli("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 2")
    check(plain, 2, e.wrapper, mark, f"{e.name} exec")
    assert plain.out == "out\n", plain
    plain_calls = [c for c in e.wrapper.since(mark, cid) if c.sub == "exec"]
    assert plain_calls and plain_calls[0].rc == 0 and "--process" in plain_calls[0].args

    r = e.cli("exec", "-u", "1000:1000", "-w", "/tmp", "-e", "FOO=bar", cid, "sh", "-c",
              'id -u; id -g; pwd; echo "$FOO"')
    check(r, 0, e.wrapper, mark, f"{e.name} exec -u -w -e")
    assert r.out.split() == ["1000", "1000", "/tmp", "bar"], r

    mark = e.wrapper.mark()
    r = run_pty(e.argv("exec", "-t", cid, "sh", "-c", f"tty; {SIZE_PROBE}; exit 6"), env=e.env)
    check(r, 6, e.wrapper, mark, f"{e.name} exec -t")
    lines = r.out.splitlines()
    assert any(line.startswith("/dev/pts/") for line in lines), r
    assert SIZE_LINE in lines, r
    tty_calls = [c for c in e.wrapper.since(mark, cid) if c.sub == "exec"]
    assert tty_calls and "--console-socket" in tty_calls[0].args and tty_calls[0].rc == 0
    return plain, plain_calls, tty_calls


def check_stop(e: EngineCLI) -> str:
    """`<engine> stop`: a process that exits on SIGTERM stops at once with its own exit code;
    pid 1 without a handler ignores SIGTERM, so after `-t 1` the engine sends SIGKILL (137).
    Returns the first container's id."""
    cid = e.start_container("busybox", "sh", "-c", LOOP_TERM_0)
    mark = e.wrapper.mark()
    check(e.cli("stop", cid), 0, e.wrapper, mark, f"{e.name} stop")
    kills = [c.args for c in e.wrapper.since(mark, cid) if c.sub == "kill"]
    assert kills and kills[0] == ["kill", cid, "15"], e.wrapper.report(mark)
    state = e.inspect(cid)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)

    second = e.start_container("busybox", "sleep", "1000")
    mark = e.wrapper.mark()
    start = time.monotonic()
    check(e.cli("stop", "-t", "1", second), 0, e.wrapper, mark, f"{e.name} stop -t 1")
    assert time.monotonic() - start < 15
    signums = [c.args[-1] for c in e.wrapper.since(mark, second) if c.sub == "kill"]
    assert signums[:1] == ["15"] and "9" in signums, e.wrapper.report(mark)
    state = e.inspect(second)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    return cid


def cgroup_parents_present(rels: Sequence[str]) -> set[str]:
    """Which of the cgroup paths `rels` (like "docker") exist now, in any hierarchy."""
    return {rel for rel in rels for ctrl in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(os.path.join("/sys/fs/cgroup", ctrl, rel))}


def remove_cgroup_parents(rels: Sequence[str], keep: set[str]) -> list[str]:
    """Remove the parent cgroups an engine made (deepest first, e.g. "libpod_parent/conmon"
    before "libpod_parent") unless they existed before the suite (`keep`); a parent that
    still holds a cgroup is a problem, returned."""
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
