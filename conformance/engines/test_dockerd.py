"""dockerd 20.10 with `--add-runtime pyrunc=<wrapper>`: docker run/exec/top/pause/update/stop/
rm/stats through containerd-shim-runc-v2 and pyrunc.

One dockerd per module with its own data root, exec root, pidfile, config file and socket,
no bridge, no iptables, no userland proxy; containers run with `--network none`."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conformance.engines.conftest import (
    LOOP_TERM_0,
    SIZE_LINE,
    SIZE_PROBE,
    EngineCLI,
    assert_called,
    cgroup_of,
    check,
    check_exec,
    check_stop,
    need,
    need_overlayfs,
    read,
    wait_for,
)
from conformance.engines.drivers import DockerDaemon
from conformance.engines.procs import (
    Daemon,
    cgroup_parents_present,
    remove_cgroup_parents,
    run,
    run_pty,
    short_tempdir,
    unmount_and_remove,
)
from conformance.engines.wrapper import Wrapper

pytestmark = [pytest.mark.timeout(120)]

CGROUP_PARENTS = ("docker",)   # made by dockerd (cgroupfs driver) in every hierarchy


class Dockerd(EngineCLI):
    name = "docker"

    def __init__(self, top: str, bins: dict[str, str], wrapper: Wrapper) -> None:
        super().__init__(top, bins, wrapper)
        self.engine = DockerDaemon(top, {"pyrunc": wrapper.path}, dockerd=bins["dockerd"],
                                   docker=bins["docker"])
        self.sock = self.engine.sock
        self.env.update(DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=os.path.join(top, "client"))
        self.runtime_root = self.engine.runtime_root
        self.daemon: Daemon | None = None
        self.cgroups_before = cgroup_parents_present(CGROUP_PARENTS)

    def start(self) -> None:
        self.daemon = self.engine.start()

    def argv(self, *args: str) -> list[str]:
        return [self.bins["docker"], *args]

    docker = EngineCLI.cli

    def run_argv(self, *args: str, cidfile: str | None = None) -> list[str]:
        """`docker run --runtime pyrunc --network none [--cidfile F] <args>`"""
        extra = ["--cidfile", cidfile] if cidfile else []
        return self.argv("run", "--runtime", "pyrunc", "--network", "none", *extra, *args)

    def pid(self, cid: str) -> int:
        return int(self.inspect(cid)["State"]["Pid"])

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.daemon and self.daemon.proc.poll() is None:
            r = self.docker("ps", "-aq", "--no-trunc")
            for cid in r.out.split():
                self.ids.add(cid)
                self.docker("rm", "-f", cid, timeout=60)
        self.engine.stop()  # and the containerd it started, if it outlived it
        if os.path.isdir(self.runtime_root):
            left = os.listdir(self.runtime_root)
            if left:
                problems.append(f"pyrunc state left in {self.runtime_root}: {left}")
                for cid in left:
                    run([self.wrapper.path, "--root", self.runtime_root, "delete", "--force",
                         cid], timeout=30)
        for cid in self.ids:
            left = [f"/sys/fs/cgroup/{c}/docker/{cid}" for c in os.listdir("/sys/fs/cgroup")
                    if os.path.isdir(f"/sys/fs/cgroup/{c}/docker/{cid}")]
            if left:
                problems.append(f"cgroups left: {left}")
        problems += remove_cgroup_parents(CGROUP_PARENTS, self.cgroups_before)
        problems += unmount_and_remove(self.top)
        return problems


def docker_client() -> str | None:
    """The docker.io package's client (20.10, matching the daemon) before any other."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker")


@pytest.fixture(scope="module")
def dk(busybox_archive, wrapper):
    bins = need("dockerd", "containerd", "containerd-shim-runc-v2")
    client = docker_client()
    if not client:
        pytest.skip("not installed: docker (apt-get install docker.io)")
    bins["docker"] = client
    need_overlayfs()
    d = Dockerd(short_tempdir("pyrunc-dk-"), bins, wrapper)
    try:
        d.start()
        r = d.docker("load", "-i", busybox_archive, timeout=120)
        assert r.rc == 0, f"docker load failed:\n{r!r}"
        yield d
    finally:
        problems = d.teardown()
    assert not problems, "; ".join(problems)


def _cid_from(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_run_rm_plain(dk, tmp_path):
    cidfile = str(tmp_path / "cid")
    mark = dk.wrapper.mark()
    r = run(dk.run_argv("--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                        cidfile=cidfile), env=dk.env)
    check(r, 3, dk.wrapper, mark, "docker run --rm")
    assert r.out == "out\n"
    assert r.err == "err\n"
    cid = _cid_from(cidfile)
    dk.ids.add(cid)
    for sub in ("create", "start", "delete"):
        assert_called(dk.wrapper, mark, sub, cid)
    # Docker's config carries the libnetwork prestart hook even with --network none.
    create = next(c for c in dk.wrapper.since(mark, cid) if c.sub == "create")
    with open(create.config_path) as f:
        assert json.load(f)["hooks"]["prestart"]
    wait_for(lambda: dk.docker("ps", "-aq", "--no-trunc").out.split().count(cid) == 0, 10,
             "the --rm container to be removed")
    assert not os.path.exists(os.path.join(dk.runtime_root, cid))


def test_run_and_exec_stdin(dk):
    """-i: the client's stdin reaches the container's process through create's stdio."""
    r = run(dk.run_argv("-i", "--rm", "busybox", "wc", "-l"), env=dk.env,
            input=b"one\ntwo\nthree\n")
    assert r.rc == 0 and r.out.strip() == "3", r
    cid = dk.start_container("busybox", "sleep", "1000")
    r = run(dk.argv("exec", "-i", cid, "cat"), env=dk.env, input=b"via exec\n")
    assert r.rc == 0 and r.out == "via exec\n", r


def test_run_tty(dk, tmp_path):
    cidfile = str(tmp_path / "cid")
    mark = dk.wrapper.mark()
    r = run_pty(dk.run_argv("--rm", "-t", "busybox", "sh", "-c",
                            f"tty; {SIZE_PROBE}; exit 4", cidfile=cidfile), env=dk.env)
    check(r, 4, dk.wrapper, mark, "docker run --rm -t")
    lines = r.out.splitlines()
    assert "/dev/pts/0" in lines, r
    assert SIZE_LINE in lines, r
    cid = _cid_from(cidfile)
    create = next(c for c in dk.wrapper.since(mark, cid) if c.sub == "create")
    assert "--console-socket" in create.args and create.rc == 0


def test_run_options(dk, tmp_path):
    """The run options that reach the runtime through config.json: user, cwd, env, hostname,
    read-only root, a tmpfs, a read-only volume, rlimits and capabilities."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "hello").write_text("hi\n")
    script = ("id -u; id -g; pwd; echo \"$FOO\"; hostname; "
              "touch /x 2>/dev/null && echo root-rw || echo root-ro; "
              "touch /run/x && echo run-rw; cat /mnt/hello; "
              "touch /mnt/y 2>/dev/null && echo vol-rw || echo vol-ro; "
              "ulimit -n; ulimit -Hn; grep ^CapBnd /proc/self/status")
    mark = dk.wrapper.mark()
    r = run(dk.run_argv("--rm", "-u", "1000:1000", "-w", "/tmp", "-e", "FOO=bar",
                        "--hostname", "h1", "--read-only", "--tmpfs", "/run:size=1m",
                        "-v", f"{vol}:/mnt:ro", "--ulimit", "nofile=1024:2048",
                        "--cap-drop", "ALL", "--cap-add", "NET_RAW",
                        "busybox", "sh", "-c", script), env=dk.env)
    check(r, 0, dk.wrapper, mark, "docker run with options")
    assert r.out.splitlines() == [
        "1000", "1000", "/tmp", "bar", "h1", "root-ro", "run-rw", "hi", "vol-ro", "1024", "2048",
        "CapBnd:\t0000000000002000"], r


def test_join_namespaces_of_another_container(dk):
    """--network/--pid/--ipc container:X put the namespace paths of X in config.json."""
    donor = dk.start_container("--ipc", "shareable", "busybox", "sleep", "1000")
    pid = dk.pid(donor)
    r = dk.docker("run", "--rm", "--runtime", "pyrunc", "--network", f"container:{donor}",
                  "--pid", f"container:{donor}", "--ipc", f"container:{donor}", "busybox",
                  "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                  "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc")
    assert r.rc == 0, r
    assert r.out.splitlines() == ["sleep 1000 ", os.readlink(f"/proc/{pid}/ns/net"),
                                  os.readlink(f"/proc/{pid}/ns/ipc")], r
    assert dk.inspect(donor)["State"]["Running"] is True


def test_run_detached_and_logs(dk):
    cid = dk.start_container("busybox", "sh", "-c", f"echo started; {LOOP_TERM_0}")
    wait_for(lambda: dk.docker("logs", cid).out == "started\n", 10, "the container's log")
    state = dk.inspect(cid)["State"]
    assert state["Status"] == "running" and state["Pid"] > 0
    # The init runs in its own pid namespace as pid 1.
    with open(f"/proc/{state['Pid']}/status") as f:
        nspid = next(line for line in f if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1"


def test_memory_and_pids_limits(dk):
    cid = dk.start_container("--memory", "64m", "--pids-limit", "50", "busybox", "sh", "-c",
                             LOOP_TERM_0)
    pid = dk.pid(cid)
    mem = cgroup_of(pid, "memory")
    pids = cgroup_of(pid, "pids")
    assert mem and mem.endswith(f"/docker/{cid}"), mem
    assert read(os.path.join(mem, "memory.limit_in_bytes")) == str(64 << 20)
    assert read(os.path.join(pids, "pids.max")) == "50"
    # What the container sees of its own cgroup agrees.
    r = dk.docker("exec", cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                  "/sys/fs/cgroup/pids/pids.max")
    assert r.rc == 0 and r.out.split() == [str(64 << 20), "50"], r
    # The pids limit is enforced: 60 background sleeps can't all be forked.
    r = dk.docker("exec", cid, "sh", "-c",
                  "i=0; while [ $i -lt 60 ]; do sleep 5 & i=$((i+1)); done 2>&1; "
                  "echo forked; kill $(jobs -p) 2>/dev/null")
    assert "fork" in (r.out + r.err).lower(), r


def test_memory_limit_oom_kill(dk, tmp_path):
    """The shim watches the cgroup the spec names: an OOM kill there shows in docker inspect."""
    cidfile = str(tmp_path / "cid")
    r = run(dk.run_argv("--memory", "32m", "--memory-swap", "32m", "busybox", "tail",
                        "/dev/zero", cidfile=cidfile), env=dk.env)
    cid = _cid_from(cidfile)
    dk.ids.add(cid)
    assert r.rc == 137, r
    state = dk.inspect(cid)["State"]
    assert (state["OOMKilled"], state["ExitCode"]) == (True, 137)
    check(dk.docker("rm", cid), 0, what="docker rm")


def test_exec_plain_tty_and_process_options(dk):
    plain, _, _ = check_exec(dk)
    assert plain.err == "err\n", plain


def test_top(dk):
    cid = dk.start_container("busybox", "sh", "-c", "sleep 1000 & sleep 999 & wait")
    wait_for(lambda: len(read(os.path.join(cgroup_of(dk.pid(cid), "pids"),
                                           "cgroup.procs")).split()) == 3, 10,
             "the two sleeps to start")
    mark = dk.wrapper.mark()
    r = check(dk.docker("top", cid), 0, dk.wrapper, mark, "docker top")
    assert_called(dk.wrapper, mark, "ps", cid)
    body = r.out.splitlines()[1:]
    assert len(body) == 3, r
    assert any("sleep 1000" in line for line in body), r
    assert any("sleep 999" in line for line in body), r
    assert str(dk.pid(cid)) in r.out


def test_pause_unpause(dk):
    cid = dk.start_container(
        "busybox", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
    pid = dk.pid(cid)
    counter = f"/proc/{pid}/root/tmp/n"
    wait_for(lambda: os.path.exists(counter) and read(counter), 10, "the counter to start")
    mark = dk.wrapper.mark()
    check(dk.docker("pause", cid), 0, dk.wrapper, mark, "docker pause")
    assert_called(dk.wrapper, mark, "pause", cid)
    state = dk.inspect(cid)["State"]
    assert state["Status"] == "paused" and state["Paused"] is True
    assert read(os.path.join(cgroup_of(pid, "freezer"), "freezer.state")) == "FROZEN"
    before = read(counter)
    time.sleep(0.5)
    assert read(counter) == before, "the counter moved while the container was paused"
    check(dk.docker("unpause", cid), 0, dk.wrapper, mark, "docker unpause")
    assert_called(dk.wrapper, mark, "resume", cid)
    assert dk.inspect(cid)["State"]["Status"] == "running"
    wait_for(lambda: read(counter) != before, 5, "the counter to move after unpause")


def test_update(dk):
    cid = dk.start_container("--memory", "64m", "--pids-limit", "50", "busybox", "sh", "-c",
                             LOOP_TERM_0)
    pid = dk.pid(cid)
    mark = dk.wrapper.mark()
    r = dk.docker("update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "60",
                  "--cpu-shares", "512", cid)
    check(r, 0, dk.wrapper, mark, "docker update")
    upd = [c for c in dk.wrapper.since(mark, cid) if c.sub == "update"]
    assert upd and upd[0].args[:3] == ["update", "--resources", "-"], dk.wrapper.report(mark)
    assert json.loads(upd[0].stdin)["memory"]["limit"] == 128 << 20
    mem = cgroup_of(pid, "memory")
    assert read(os.path.join(mem, "memory.limit_in_bytes")) == str(128 << 20)
    if os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")):
        assert read(os.path.join(mem, "memory.memsw.limit_in_bytes")) == str(256 << 20)
    assert read(os.path.join(cgroup_of(pid, "pids"), "pids.max")) == "60"
    assert read(os.path.join(cgroup_of(pid, "cpu"), "cpu.shares")) == "512"
    host = dk.inspect(cid)["HostConfig"]
    assert host["Memory"] == 128 << 20 and host["PidsLimit"] == 60


def test_stats_no_stream(dk):
    cid = dk.start_container("--memory", "64m", "busybox", "sh", "-c",
                             "sleep 1000 & " + LOOP_TERM_0)
    r = dk.docker("stats", "--no-stream", "--format",
                  "{{.ID}}|{{.MemUsage}}|{{.PIDs}}", cid)
    assert r.rc == 0, r
    short, mem, npids = r.out.strip().split("|")
    assert cid.startswith(short)
    assert mem.endswith("/ 64MiB"), r
    assert not mem.startswith("0B"), r
    assert int(npids) >= 2, r


def test_stop_sigterm_then_sigkill(dk):
    cid = check_stop(dk)
    assert not os.path.exists(os.path.join(dk.runtime_root, cid))


def test_rm_force(dk):
    cid = dk.start_container("busybox", "sleep", "1000")
    pid = dk.pid(cid)
    cg = cgroup_of(pid, "memory")
    mark = dk.wrapper.mark()
    check(dk.docker("rm", "-f", cid), 0, dk.wrapper, mark, "docker rm -f")
    kills = [c.args for c in dk.wrapper.since(mark, cid) if c.sub == "kill"]
    assert kills and kills[0][-1] == "9", dk.wrapper.report(mark)
    assert_called(dk.wrapper, mark, "delete", cid)
    assert cid not in dk.docker("ps", "-aq", "--no-trunc").out.split()
    assert not os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(cg)
    assert not os.path.exists(os.path.join(dk.runtime_root, cid))


def test_seccomp_default_profile(dk, tmp_path):
    """Docker's default seccomp profile is loaded in filter mode; unconfined loads none."""
    r = dk.docker("run", "--rm", "--runtime", "pyrunc", "--network", "none", "busybox",
                  "grep", "^Seccomp:", "/proc/self/status")
    assert r.rc == 0 and r.out.split() == ["Seccomp:", "2"], r
    r = dk.docker("run", "--rm", "--runtime", "pyrunc", "--network", "none", "--security-opt",
                  "seccomp=unconfined", "busybox", "grep", "^Seccomp:", "/proc/self/status")
    assert r.rc == 0 and r.out.split() == ["Seccomp:", "0"], r
