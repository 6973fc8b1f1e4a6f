"""podman 4.3 (through conmon) with `--runtime <wrapper>`: run, run -t, exec, stop, rm -f.

podman has no daemon: the module gets its own containers.conf, storage.conf and registries.conf
(graph root, run root, tmp dir, volume and network dirs in a temp dir), cgroupfs and no network
(drivers.py's Podman).
conmon passes the runtime no global flags, so pyrunc keeps its state in its default root
(/run/pyrunc); the teardown checks that no container of this module is left there."""

from __future__ import annotations

import os
import time

import pytest

from conformance.engines import drivers
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
)
from conformance.engines.procs import run, run_pty, short_tempdir
from conformance.engines.wrapper import Wrapper

pytestmark = [pytest.mark.timeout(120)]

PYRUNC_DEFAULT_ROOT = "/run/pyrunc"


class Podman(EngineCLI):
    name = "podman"

    def __init__(self, top: str, bins: dict[str, str], wrapper: Wrapper) -> None:
        super().__init__(top, bins, wrapper)
        self.engine = drivers.Podman(top, bins["podman"], wrapper.path)
        self.env = self.engine.env

    def argv(self, *args: str) -> list[str]:
        return self.engine.argv(*args)

    podman = EngineCLI.cli

    def teardown(self) -> list[str]:
        problems: list[str] = []
        self.ids.update(self.engine.remove_all())
        for cid in self.ids:
            if os.path.exists(os.path.join(PYRUNC_DEFAULT_ROOT, cid)):
                problems.append(f"pyrunc state left: {PYRUNC_DEFAULT_ROOT}/{cid}")
                run([self.wrapper.path, "delete", "--force", cid], timeout=30)
            left = [f"/sys/fs/cgroup/{c}/libpod_parent/libpod-{cid}"
                    for c in os.listdir("/sys/fs/cgroup")
                    if os.path.isdir(f"/sys/fs/cgroup/{c}/libpod_parent/libpod-{cid}")]
            if left:
                problems.append(f"cgroups left: {left}")
        return problems + self.engine.cleanup()


@pytest.fixture(scope="module")
def pm(busybox_archive, wrapper):
    bins = need("podman", "conmon")
    need_overlayfs()
    p = Podman(short_tempdir("pyrunc-pm-"), bins, wrapper)
    try:
        r = p.podman("load", "-i", busybox_archive, timeout=120)
        assert r.rc == 0, f"podman load failed:\n{r!r}"
        yield p
    finally:
        problems = p.teardown()
    assert not problems, "; ".join(problems)


def test_run_rm(pm, tmp_path):
    cidfile = str(tmp_path / "cid")
    mark = pm.wrapper.mark()
    start = time.monotonic()
    r = pm.podman("run", "--rm", "--cidfile", cidfile, "busybox", "sh", "-c",
                  "echo out; echo err >&2; exit 3")
    check(r, 3, pm.wrapper, mark, "podman run --rm")
    assert time.monotonic() - start < 15, "podman waited for its exit-command timeout"
    assert r.out == "out\n"
    assert "err" in r.err
    with open(cidfile) as f:
        cid = f.read().strip()
    pm.ids.add(cid)
    for sub in ("create", "start"):
        assert_called(pm.wrapper, mark, sub, cid)
    create = next(c for c in pm.wrapper.since(mark, cid) if c.sub == "create")
    assert create.argv[0] == "create", "conmon passes no global flags"
    assert cid not in pm.podman("ps", "-aq", "--no-trunc").out.split()
    assert not os.path.exists(os.path.join(PYRUNC_DEFAULT_ROOT, cid))


def test_run_tty(pm):
    mark = pm.wrapper.mark()
    r = run_pty(pm.argv("run", "--rm", "-t", "busybox", "sh", "-c",
                        f"tty; {SIZE_PROBE}; exit 4"), env=pm.env)
    check(r, 4, pm.wrapper, mark, "podman run --rm -t")
    lines = r.out.splitlines()
    assert "/dev/pts/0" in lines, r
    assert SIZE_LINE in lines, r
    creates = [c for c in pm.wrapper.since(mark) if c.sub == "create"]
    assert creates and "--console-socket" in creates[0].args and creates[0].rc == 0


def test_exec(pm):
    plain, calls, tty_calls = check_exec(pm)
    assert "err" in plain.err, plain
    assert "--detach" in calls[0].args
    assert "--tty" in tty_calls[0].args


def test_stop(pm):
    check_stop(pm)


def test_rm_force(pm):
    # A running container that exits on SIGTERM, then one removed with SIGKILL at once.
    for args, signum in ((("sh", "-c", LOOP_TERM_0), "15"), (("sleep", "1000"), "9")):
        cid = pm.start_container("busybox", *args)
        pid = pm.inspect(cid)["State"]["Pid"]
        cg = cgroup_of(pid, "memory")
        mark = pm.wrapper.mark()
        extra = ("-t", "0") if signum == "9" else ()
        check(pm.podman("rm", "-f", *extra, cid), 0, pm.wrapper, mark, "podman rm -f")
        kills = [c.args for c in pm.wrapper.since(mark, cid) if c.sub == "kill"]
        assert kills and kills[0][-1] == signum, pm.wrapper.report(mark)
        assert_called(pm.wrapper, mark, "delete", cid)
        assert cid not in pm.podman("ps", "-aq", "--no-trunc").out.split()
        assert not os.path.exists(f"/proc/{pid}")
        assert cg and not os.path.exists(cg)
        assert not os.path.exists(os.path.join(PYRUNC_DEFAULT_ROOT, cid))
