"""podman 4.3 (through conmon) with `--runtime <wrapper>`: run, run -t, exec, stop, rm -f.

podman has no daemon: the module gets its own containers.conf, storage.conf and registries.conf
(graph root, run root, tmp dir, volume and network dirs in a temp dir), cgroupfs and no network.
conmon passes the runtime no global flags, so pyrunc keeps its state in its default root
(/run/pyrunc); the teardown checks that no container of this module is left there."""

from __future__ import annotations

import os
import time

import pytest

from conformance.engines.conftest import (
    LOOP_TERM_0,
    SIZE_LINE,
    SIZE_PROBE,
    EngineCLI,
    assert_called,
    cgroup_of,
    cgroup_parents_present,
    check,
    check_exec,
    check_stop,
    need,
    need_overlayfs,
    remove_cgroup_parents,
    run,
    run_pty,
    short_tempdir,
    unmount_and_remove,
)
from conformance.engines.wrapper import Wrapper

pytestmark = [pytest.mark.timeout(120)]

PYRUNC_DEFAULT_ROOT = "/run/pyrunc"


CGROUP_PARENTS = ("libpod_parent", "libpod_parent/conmon")   # podman's cgroupfs parents


class Podman(EngineCLI):
    name = "podman"

    def __init__(self, top: str, bins: dict[str, str], wrapper: Wrapper) -> None:
        super().__init__(top, bins, wrapper)
        self.cgroups_before = cgroup_parents_present(CGROUP_PARENTS)
        conf = os.path.join(top, "containers.conf")
        storage = os.path.join(top, "storage.conf")
        registries = os.path.join(top, "registries.conf")
        # Settings conmon's exit command (`podman container cleanup`, run without this
        # environment) can't see must stay at their defaults relative to the graph root: a
        # custom static_dir would hide the container from it and every run would hang 20 s.
        with open(conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{top}/tmp"
volume_path = "{top}/volumes"
image_copy_tmp_dir = "{top}/tmp"
[network]
network_config_dir = "{top}/net"
""")
        with open(storage, "w") as f:
            f.write(f"""[storage]
driver = "overlay"
graphroot = "{top}/graph"
runroot = "{top}/run"
""")
        with open(registries, "w") as f:
            f.write("unqualified-search-registries = []\n")
        self.env.update(CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        CONTAINERS_REGISTRIES_CONF=registries)

    def argv(self, *args: str) -> list[str]:
        return [self.bins["podman"], "--runtime", self.wrapper.path, *args]

    podman = EngineCLI.cli

    def teardown(self) -> list[str]:
        problems: list[str] = []
        r = self.podman("ps", "-aq", "--no-trunc")
        for cid in r.out.split():
            self.ids.add(cid)
        if r.out.split():
            self.podman("rm", "-af", "-t", "0", timeout=120)
        for cid in self.ids:
            if os.path.exists(os.path.join(PYRUNC_DEFAULT_ROOT, cid)):
                problems.append(f"pyrunc state left: {PYRUNC_DEFAULT_ROOT}/{cid}")
                run([self.wrapper.path, "delete", "--force", cid], timeout=30)
            left = [f"/sys/fs/cgroup/{c}/libpod_parent/libpod-{cid}"
                    for c in os.listdir("/sys/fs/cgroup")
                    if os.path.isdir(f"/sys/fs/cgroup/{c}/libpod_parent/libpod-{cid}")]
            if left:
                problems.append(f"cgroups left: {left}")
        problems += remove_cgroup_parents(CGROUP_PARENTS, self.cgroups_before)
        problems += unmount_and_remove(self.top)
        return problems


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
