"""Fixtures for the engine suites: a busybox image built without the internet, the argv-logging
wrapper around pyrunc, and the checks the docker and podman suites share. The engines
themselves are started and driven by drivers.py, processes and mounts handled by procs.py
(both shared with bench/).

`ENGINES_RUNTIME=/usr/bin/runc pytest conformance/engines` runs the same suites with another
runtime behind the wrapper, which checks the suite itself: every test passes and each strict
xfail for a pyrunc gap reports XPASS(strict)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from conformance.engines.bundles import PYRUNC, build_busybox_archive
from conformance.engines.procs import PTY_SIZE, Result, run, run_pty
from conformance.engines.wrapper import Wrapper


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


# Shell for the container: the engine resizes the pty after the process starts, so poll.
SIZE_PROBE = ('n=0; while [ $n -lt 100 ]; do s=$(stty size 2>&1); case "$s" in [1-9]*) break;; '
              'esac; n=$((n+1)); sleep 0.05; done; echo "size $s"')
SIZE_LINE = f"size {PTY_SIZE[0]} {PTY_SIZE[1]}"


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


# --- the busybox image and the wrapper ------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory) -> str:
    """A `docker load` archive of busybox:latest built here: busybox-static rootfs -> one layer
    -> OCI layout (umoci) -> docker-archive (skopeo). No registry, no internet."""
    tools = need("umoci", "skopeo")
    top = tmp_path_factory.mktemp("busybox-image")
    try:
        return build_busybox_archive(str(top), tools["umoci"], tools["skopeo"])
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


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
