"""containerd 1.6 + ctr driving pyrunc through containerd-shim-runc-v2 (`--runc-binary`).

One containerd per module, with its own root, state, socket and namespace; every runtime call
goes through the argv-logging wrapper, so each test also checks that pyrunc itself (not the
runc on PATH) served the operation."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from conformance.engines.conftest import (
    SIZE_LINE,
    SIZE_PROBE,
    assert_called,
    cgroup_of,
    check,
    need,
    need_overlayfs,
    read,
    wait_for,
)
from conformance.engines.drivers import ContainerdDaemon
from conformance.engines.procs import Daemon, run, run_pty, short_tempdir, unmount_and_remove
from conformance.engines.wrapper import Wrapper

IMAGE = "docker.io/library/busybox:latest"
pytestmark = pytest.mark.timeout(120)


class Containerd:
    def __init__(self, top: str, bins: dict[str, str], wrapper: Wrapper) -> None:
        self.top = top
        self.bins = bins
        self.wrapper = wrapper
        self.engine = ContainerdDaemon(top, bins["containerd"], bins["ctr"])
        self.ns = f"pyrunc-{uuid.uuid4().hex[:8]}"
        # containerd-shim-runc-v2 keeps the runtime's state under <default root>/<namespace>.
        self.runtime_root = f"/run/containerd/runc/{self.ns}"
        self.ids: list[str] = []
        self.daemon: Daemon | None = None  # set by start()

    def start(self) -> None:
        self.daemon = self.engine.start()

    def ctr_argv(self, *args: str) -> list[str]:
        return self.engine.ctr_argv(self.ns, *args)

    def ctr(self, *args: str, timeout: float = 60):
        return run(self.ctr_argv(*args), timeout=timeout)

    def new_id(self) -> str:
        cid = f"c{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def run_argv(self, cid: str, *cmd: str, flags: tuple[str, ...] = ()) -> list[str]:
        return self.ctr_argv("run", *flags, "--runc-binary", self.wrapper.path, IMAGE, cid, *cmd)

    def start_container(self, *cmd: str) -> str:
        """A detached container running cmd; returns its id."""
        cid = self.new_id()
        mark = self.wrapper.mark()
        check(run(self.run_argv(cid, *cmd, flags=("-d",))), 0, self.wrapper, mark,
              "ctr run -d")
        return cid

    def tasks(self) -> dict[str, tuple[int, str]]:
        r = self.ctr("task", "ls")
        assert r.rc == 0, repr(r)
        out = {}
        for line in r.out.splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                out[parts[0]] = (int(parts[1]), parts[2])
        return out

    def status(self, cid: str) -> str | None:
        t = self.tasks().get(cid)
        return t[1] if t else None

    def pid(self, cid: str) -> int:
        return self.tasks()[cid][0]

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.daemon and self.daemon.proc.poll() is None:
            for cid in self.tasks():
                self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, timeout=30)
                wait_until = time.monotonic() + 10
                while self.status(cid) not in ("STOPPED", None) and \
                        time.monotonic() < wait_until:
                    time.sleep(0.1)
                self.ctr("task", "delete", "-f", cid, timeout=30)
            r = self.ctr("container", "ls", "-q")
            for cid in r.out.split():
                self.ctr("container", "delete", cid, timeout=30)
        if self.daemon:
            self.daemon.stop()
        if os.path.isdir(self.runtime_root):
            left = os.listdir(self.runtime_root)
            if left:
                problems.append(f"pyrunc state left in {self.runtime_root}: {left}")
                for cid in left:
                    run([self.wrapper.path, "--root", self.runtime_root, "delete", "--force",
                         cid], timeout=30)
            try:
                os.rmdir(self.runtime_root)
            except OSError as e:
                problems.append(f"{self.runtime_root}: {e}")
        # pyrunc makes /<namespace>/<id> in each hierarchy; the ids must be gone, and the
        # namespace parents (ours alone) are removed here as runc would leave them too.
        for ctrl in os.listdir("/sys/fs/cgroup"):
            parent = os.path.join("/sys/fs/cgroup", ctrl, self.ns)
            if os.path.isdir(parent):
                left = [d for d in os.listdir(parent)
                        if os.path.isdir(os.path.join(parent, d))]
                if left:
                    problems.append(f"cgroups left in {parent}: {left}")
                try:
                    os.rmdir(parent)
                except OSError:
                    pass
        problems += unmount_and_remove(self.top)
        return problems


@pytest.fixture(scope="module")
def ctd(busybox_archive, wrapper):
    bins = need("containerd", "ctr", "containerd-shim-runc-v2")
    need_overlayfs()
    c = Containerd(short_tempdir("pyrunc-ctd-"), bins, wrapper)
    try:
        c.start()
        r = c.ctr("images", "import", busybox_archive, timeout=120)
        assert r.rc == 0, f"ctr images import failed:\n{r!r}"
        yield c
    finally:
        problems = c.teardown()
    assert not problems, "; ".join(problems)


def test_run_rm_plain(ctd):
    cid = ctd.new_id()
    mark = ctd.wrapper.mark()
    r = run(ctd.run_argv(cid, "sh", "-c", "echo out; echo err >&2; exit 3", flags=("--rm",)))
    check(r, 3, ctd.wrapper, mark, "ctr run --rm")
    assert r.out == "out\n"
    assert "err" in r.err
    for sub in ("create", "start", "delete"):
        assert_called(ctd.wrapper, mark, sub, cid)
    create = next(c for c in ctd.wrapper.since(mark, cid) if c.sub == "create")
    assert "--console-socket" not in create.args
    assert ctd.status(cid) is None
    assert cid not in ctd.ctr("container", "ls", "-q").out.split()
    assert not os.path.exists(os.path.join(ctd.runtime_root, cid))


def test_run_rm_tty(ctd):
    cid = ctd.new_id()
    mark = ctd.wrapper.mark()
    r = run_pty(ctd.run_argv(cid, "sh", "-c", f"tty; {SIZE_PROBE}; echo done; exit 4",
                             flags=("--rm", "-t")))
    check(r, 4, ctd.wrapper, mark, "ctr run --rm -t")
    lines = r.out.splitlines()
    assert "/dev/pts/0" in lines, r
    assert SIZE_LINE in lines, r
    assert "done" in lines, r
    create = next(c for c in ctd.wrapper.since(mark, cid) if c.sub == "create")
    assert "--console-socket" in create.args
    assert create.rc == 0
    assert ctd.status(cid) is None


def test_run_exit_status_and_env(ctd):
    """The image's config (PATH, working dir) reaches the process; a missing binary fails."""
    cid = ctd.new_id()
    mark = ctd.wrapper.mark()
    r = run(ctd.run_argv(cid, "sh", "-c", 'echo "$PATH"; pwd', flags=("--rm",)))
    check(r, 0, ctd.wrapper, mark, "ctr run --rm env")
    assert r.out.splitlines() == ["/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                  "/"]
    cid = ctd.new_id()
    r = run(ctd.run_argv(cid, "/no/such/binary", flags=("--rm",)))
    assert r.rc != 0, r
    assert "no/such/binary" in r.err, r


def test_exec_plain_and_tty(ctd):
    cid = ctd.start_container("sleep", "1000")
    mark = ctd.wrapper.mark()
    r = ctd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo err >&2; exit 5")
    check(r, 5, ctd.wrapper, mark, "ctr task exec")
    assert r.out == "sleep 1000 \n"
    assert "err" in r.err
    ex = [c for c in ctd.wrapper.since(mark, cid) if c.sub == "exec"]
    assert ex and ex[0].rc == 0 and "--process" in ex[0].args and "--detach" in ex[0].args

    mark = ctd.wrapper.mark()
    r = run_pty(ctd.ctr_argv("task", "exec", "-t", "--exec-id", "e2", cid, "sh", "-c",
                             f"tty; {SIZE_PROBE}; exit 6"))
    check(r, 6, ctd.wrapper, mark, "ctr task exec -t")
    lines = r.out.splitlines()
    assert any(line.startswith("/dev/pts/") for line in lines), r
    assert SIZE_LINE in lines, r
    ex = [c for c in ctd.wrapper.since(mark, cid) if c.sub == "exec"]
    assert ex and "--console-socket" in ex[0].args and ex[0].rc == 0
    # The container itself is untouched by its execs.
    assert ctd.status(cid) == "RUNNING"


def test_kill_default_signal(ctd):
    cid = ctd.start_container("sh", "-c", 'trap "exit 7" TERM; while true; do sleep 0.1; done')
    mark = ctd.wrapper.mark()
    check(ctd.ctr("task", "kill", cid), 0, ctd.wrapper, mark, "ctr task kill")
    wait_for(lambda: ctd.status(cid) == "STOPPED", 15, f"{cid} to stop after SIGTERM")
    kills = [c for c in ctd.wrapper.since(mark, cid) if c.sub == "kill"]
    assert kills and kills[0].args == ["kill", cid, "15"] and kills[0].rc == 0
    r = ctd.ctr("task", "delete", cid)
    check(r, 0, ctd.wrapper, mark, "ctr task delete")
    assert "exit code 7" in r.err, r
    assert_called(ctd.wrapper, mark, "delete", cid)
    assert not os.path.exists(os.path.join(ctd.runtime_root, cid))


def test_kill_all_sigkill(ctd):
    cid = ctd.start_container("sh", "-c", "sleep 1000 & wait")
    mark = ctd.wrapper.mark()
    check(ctd.ctr("task", "exec", "-d", "--exec-id", "x1", cid, "sleep", "999"), 0,
          ctd.wrapper, mark, "ctr task exec -d")
    cg = cgroup_of(ctd.pid(cid), "pids")
    assert cg and len(read(os.path.join(cg, "cgroup.procs")).split()) == 3
    check(ctd.ctr("task", "kill", "-a", "-s", "SIGKILL", cid), 0, ctd.wrapper, mark,
          "ctr task kill -a")
    wait_for(lambda: ctd.status(cid) == "STOPPED", 15, f"{cid} to stop after kill --all")
    kills = [c for c in ctd.wrapper.since(mark, cid) if c.sub == "kill"]
    assert kills and kills[0].args == ["kill", "--all", cid, "9"] and kills[0].rc == 0
    assert read(os.path.join(cg, "cgroup.procs")) == ""
    r = ctd.ctr("task", "delete", cid)
    check(r, 0, ctd.wrapper, mark, "ctr task delete")
    assert "exit code 137" in r.err, r
    assert not os.path.exists(cg)


def test_pause_resume(ctd):
    cid = ctd.start_container(
        "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
    pid = ctd.pid(cid)
    counter = f"/proc/{pid}/root/tmp/n"
    wait_for(lambda: os.path.exists(counter) and read(counter), 10, "the counter to start")
    freezer = cgroup_of(pid, "freezer")
    assert freezer
    mark = ctd.wrapper.mark()
    check(ctd.ctr("task", "pause", cid), 0, ctd.wrapper, mark, "ctr task pause")
    assert_called(ctd.wrapper, mark, "pause", cid)
    assert ctd.status(cid) == "PAUSED"
    assert read(os.path.join(freezer, "freezer.state")) == "FROZEN"
    before = read(counter)
    time.sleep(0.5)
    assert read(counter) == before, "the counter moved while the container was paused"
    check(ctd.ctr("task", "resume", cid), 0, ctd.wrapper, mark, "ctr task resume")
    assert_called(ctd.wrapper, mark, "resume", cid)
    assert ctd.status(cid) == "RUNNING"
    assert read(os.path.join(freezer, "freezer.state")) == "THAWED"
    wait_for(lambda: read(counter) != before, 5, "the counter to move after resume")


def test_ps(ctd):
    cid = ctd.start_container("sh", "-c", "sleep 1000 & wait")
    mark = ctd.wrapper.mark()
    check(ctd.ctr("task", "exec", "-d", "--exec-id", "p1", cid, "sleep", "999"), 0,
          ctd.wrapper, mark, "ctr task exec -d")
    init = ctd.pid(cid)
    r = check(ctd.ctr("task", "ps", cid), 0, ctd.wrapper, mark, "ctr task ps")
    assert_called(ctd.wrapper, mark, "ps", cid)
    rows = [line.split(None, 1) for line in r.out.splitlines()[1:] if line.strip()]
    pids = {int(row[0]) for row in rows}
    procs = {int(p) for p in read(os.path.join(cgroup_of(init, "pids"), "cgroup.procs")).split()}
    assert pids == procs, r
    assert init in pids
    assert any("ExecID:p1" in row[1] for row in rows if len(row) > 1), r


def test_delete_running_and_force(ctd):
    cid = ctd.start_container("sleep", "1000")
    cg = cgroup_of(ctd.pid(cid), "memory")
    mark = ctd.wrapper.mark()
    r = ctd.ctr("task", "delete", cid)
    assert r.rc != 0 and "must be stopped" in r.err, r
    assert ctd.status(cid) == "RUNNING"
    check(ctd.ctr("task", "delete", "--force", cid), 0, ctd.wrapper, mark, "ctr task delete -f")
    assert ctd.status(cid) is None
    assert_called(ctd.wrapper, mark, "delete", cid)
    check(ctd.ctr("container", "delete", cid), 0, ctd.wrapper, mark, "ctr container delete")
    assert not os.path.exists(os.path.join(ctd.runtime_root, cid))
    assert not os.path.exists(cg)
    r = run([ctd.wrapper.path, "--root", ctd.runtime_root, "state", cid])
    assert r.rc != 0 and "does not exist" in r.err, r


def _joined_container(ctd, donor: str, script: str):
    pid = ctd.pid(donor)
    cid = ctd.new_id()
    mark = ctd.wrapper.mark()
    r = run(ctd.run_argv(cid, "sh", "-c", script, flags=(
        "--rm", "--with-ns", f"pid:/proc/{pid}/ns/pid",
        "--with-ns", f"network:/proc/{pid}/ns/net")))
    return pid, cid, mark, r


def test_join_namespaces_of_another_container(ctd):
    donor = ctd.start_container("sleep", "1000")
    pid, cid, mark, r = _joined_container(
        ctd, donor, "cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/net; "
                    "exit 3")
    check(r, 3, ctd.wrapper, mark, "ctr run --with-ns")
    assert r.out.splitlines() == ["sleep 1000 ", os.readlink(f"/proc/{pid}/ns/net")], r
    assert ctd.status(donor) == "RUNNING"


def test_kill_all_after_exit_in_shared_pid_namespace(ctd):
    donor = ctd.start_container("sleep", "1000")
    _, cid, mark, r = _joined_container(ctd, donor, "exit 0")
    check(r, 0, ctd.wrapper, mark, "ctr run --with-ns")
    kills = [c for c in ctd.wrapper.since(mark, cid) if c.sub == "kill"]
    assert kills and kills[0].args == ["kill", "--all", cid, "9"], ctd.wrapper.report(mark)
    assert all(c.rc == 0 for c in kills), ctd.wrapper.report(mark)
