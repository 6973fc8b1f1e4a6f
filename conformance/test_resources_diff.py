"""linux.resources, cgroupsPath and the cgroup commands, runc and pyrunc side by side.

Each case starts the same config under both runtimes. The container's init writes what it
sees (its own cgroup files under /sys/fs/cgroup, devices it may open, a memory hog, a fork
loop) into a bind-mounted directory and then sleeps; the test reads the same cgroup files from
the HOST, in the directory each runtime made (found through /proc/<init>/cgroup), and compares
the two normalised views, runc on the left. `update`, `pause`/`resume`, `ps` and `events` are
compared as transitions and shapes.

Settings this host can't apply are compared as error-or-not. Where runc 1.1.5 and pyrunc
differ by design the case is pinned below with the reason; where pyrunc is wrong the single
case is `xfail(strict=True)`.

The host is hybrid (v1 cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids; a cgroup2
mount at /sys/fs/cgroup/unified with only hugetlb). Limits are small: memory 48 MiB, pids 8.
Device probes only open /dev/loopN (never read or write a byte of them).
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conformance import observe
from conformance.cgroupview import (
    CGROOT,
    WEIGHT_FILE,
    Config,
    MiB,
    _sleeping,
    cgroup_paths,
    own_file,
    read_host,
)
from conformance.pair import NAMES, Pair
from tests import hostcaps
from tests.rig import cgroup_leftovers

pytestmark = pytest.mark.peer

UNLIMITED = "9223372036854771712"  # v1 memory "no limit" (page-aligned LLONG_MAX)
PROBE_DIR = "/probe"


# -- running one case under one runtime --------------------------------------------------

def _inside_script(files: list[str], extra: dict[str, str]) -> str:
    """Probe script: each cgroup file as the container sees it, then the extra probes."""
    probes = {f"in:{f}": f"cat {CGROOT}/{f}" for f in files}
    probes.update(extra)
    return observe.script((), probes)


def _with_probe_dir(cfg: Config, bundle: str) -> None:
    os.makedirs(os.path.join(bundle, "probe"))
    cfg["mounts"].append({"destination": PROBE_DIR, "type": "bind",
                          "source": os.path.join(bundle, "probe"), "options": ["rbind", "rw"]})


def start_probed(pair: Pair, name: str, config: Config, files: list[str],
                 extra: dict[str, str], mutate: Callable[[Config, str], None] | None = None,
                 ) -> tuple[str, int, str]:
    """create + start a container whose init writes its probes to <bundle>/probe/out, then
    sleeps; returns (id, init pid, probe output) once the probes are done."""
    cfg = copy.deepcopy(config)
    script = _inside_script(files, extra)
    cfg["process"]["args"] = ["sh", "-c", f"( {script} ) > {PROBE_DIR}/out 2>&1; "
                              f"touch {PROBE_DIR}/done; exec sleep 120"]

    def mut(c: Config, bundle: str) -> None:
        _with_probe_dir(c, bundle)
        if mutate is not None:
            mutate(c, bundle)

    cid, pid = pair.start_detached(name, cfg, mut)
    bundle = pair.rt[name].state(cid)["bundle"]
    done = os.path.join(bundle, "probe", "done")
    deadline = time.monotonic() + 30
    while not os.path.exists(done):
        assert time.monotonic() < deadline, f"{name}: the probes never finished"
        time.sleep(0.02)
    with open(os.path.join(bundle, "probe", "out")) as f:
        return cid, pid, f.read()


def observe_both(pair: Pair, config: Config, files: list[str], extra: dict[str, str],
                 mutate: Callable[[Config, str], None] | None = None) -> dict[str, Any]:
    """{runtime: {"host": {...}, "inside": {...}}} with ids normalised away."""
    seen = {}
    for name in NAMES:
        cid, pid, out = start_probed(pair, name, config, files, extra, mutate)
        inside = observe.normalise(observe.parse(out), {cid: "<ID>"})
        seen[name] = {"host": read_host(pid, files), "inside": inside}
        pair.rt[name]("delete", "--force", cid, check=True)
    return seen


def assert_same(seen: dict[str, Any], what: str) -> None:
    diff = observe.differences(seen["runc"], seen["pyrunc"])
    if diff:
        pytest.fail(f"{what}: pyrunc differs from runc\n{diff}", pytrace=False)


def create_rc(pair: Pair, name: str, config: Config,
              mutate: Callable[[Config, str], None] | None = None) -> tuple[int, str]:
    """`create` once; a refusal must leave no state directory and no cgroup behind."""
    rt = pair.rt[name]
    b = pair.bundle(name, config, mutate)
    cid = rt.new_id("res")
    p = rt("create", "--bundle", b.path, cid)
    if p.returncode != 0:
        assert not os.path.exists(os.path.join(rt.root, cid)), f"{name} left its state dir"
        assert not cgroup_leftovers(cid), f"{name} left cgroups: {cgroup_leftovers(cid)}"
    else:
        rt("delete", "--force", cid, check=True)
    return p.returncode, p.stderr.decode(errors="replace").strip()


# -- the cases ------------------------------------------------------------------------------

MEM_FILES = ["memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes",
             "memory/memory.memsw.limit_in_bytes", "memory/memory.swappiness",
             "memory/memory.oom_control"]
CPU_FILES = ["cpu/cpu.shares", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"]
# dd reads into one 128 MiB buffer: far above a 48 MiB limit, so the kernel kills it.
OOM = {"oom": "dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo dd=$?"}
# Under pids.max 8 a child shell starts background sleeps until a fork fails, which ends
# it: the init sh, the probe script's subshell, the probe's own subshell and the child shell
# hold four pids, so four sleeps start and the fifth fork fails. Only builtins run after.
FORKS = {"forks": "sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 2 & done' 2>/dev/null; "
                  "read n < /sys/fs/cgroup/pids/pids.current; echo current=$n; "
                  "read e < /sys/fs/cgroup/pids/pids.events; echo $e"}
# Opening (never reading or writing) block devices made by linux.devices.
DEVICE_PROBES = {"open_r_loop0": "exec 3</dev/loop0 && echo opened",
                 "open_rw_loop0": "exec 3<>/dev/loop0 && echo opened",
                 "open_r_loop1": "exec 3</dev/loop1 && echo opened",
                 "mknod_loop2": "mknod /dev/l2 b 7 2 && exec 3</dev/l2 && echo opened",
                 "null_zero": "echo x > /dev/null && head -c1 /dev/zero | wc -c"}
LOOP_NODES = [{"path": f"/dev/loop{n}", "type": "b", "major": 7, "minor": n, "fileMode": 0o660}
              for n in (0, 1)]


def _loops(cfg: Config, bundle: str) -> None:
    cfg["linux"]["devices"] = copy.deepcopy(LOOP_NODES)
    cfg["process"]["capabilities"] = {s: ["CAP_KILL", "CAP_MKNOD"]
                                      for s in ("bounding", "effective", "permitted")}


def _needs(mount: str, name: str) -> Any:
    return pytest.mark.skipif(not own_file(mount, name),
                              reason=f"this host's {mount} cgroups have no {name}")


def rcase(name: str, resources: dict[str, Any], files: list[str],
          extra: dict[str, str] | None = None, mutate: Any = None, marks: Any = ()) -> Any:
    return pytest.param(resources, files, extra or {}, mutate, id=name, marks=marks)


APPLIED = [
    rcase("memory_all", {"memory": {"limit": 48 * MiB, "reservation": 32 * MiB,
                                    "swap": 64 * MiB, "swappiness": 10}},
          MEM_FILES, marks=[_needs("memory", "memory.memsw.limit_in_bytes"),
                            _needs("memory", "memory.swappiness")]),
    rcase("memory_limit_only", {"memory": {"limit": 48 * MiB}}, MEM_FILES),
    rcase("memory_no_swap_oom", {"memory": {"limit": 48 * MiB, "swap": 48 * MiB}},
          MEM_FILES, OOM, marks=_needs("memory", "memory.memsw.limit_in_bytes")),
    rcase("memory_unlimited", {"memory": {"limit": -1, "swap": -1}}, MEM_FILES,
          marks=_needs("memory", "memory.memsw.limit_in_bytes")),
    rcase("memory_oom_killer_off", {"memory": {"limit": 48 * MiB, "disableOOMKiller": True}},
          MEM_FILES),
    rcase("cpu_cfs", {"cpu": {"shares": 512, "quota": 50000, "period": 100000}}, CPU_FILES),
    rcase("cpu_quota_unlimited", {"cpu": {"quota": -1, "period": 250000}}, CPU_FILES),
    rcase("cpu_realtime", {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}},
          ["cpu/cpu.rt_period_us", "cpu/cpu.rt_runtime_us"],
          marks=_needs("cpu", "cpu.rt_runtime_us")),
    rcase("cpuset", {"cpu": {"cpus": "0", "mems": "0"}},
          ["cpuset/cpuset.cpus", "cpuset/cpuset.mems"],
          {"nproc": "grep -c ^processor /proc/cpuinfo; grep Cpus_allowed_list /proc/self/status"}),
    rcase("pids_limit", {"pids": {"limit": 8}}, ["pids/pids.max"], FORKS),
    rcase("pids_unlimited", {"pids": {"limit": -1}}, ["pids/pids.max"]),
    rcase("blkio_weight", {"blockIO": {"weight": 500}},
          ["blkio/blkio.weight", "blkio/blkio.bfq.weight"],
          marks=hostcaps.needs(WEIGHT_FILE is not None,
                               "blkio weight files (the disk scheduler is not BFQ or CFQ); "
                               "see test_resources_error_or_not[blkio_weight_unsupported]")),
    rcase("blkio_throttle", {"blockIO": {
        "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": MiB}],
        "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 100}]}},
        ["blkio/blkio.throttle.read_bps_device", "blkio/blkio.throttle.write_iops_device"]),
    rcase("devices_default_deny", {}, [], DEVICE_PROBES, _loops),
    rcase("devices_allow_read", {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]},
        [], DEVICE_PROBES, _loops),
    rcase("devices_allow_major_wildcard", {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": -1, "access": "rw"}]},
        [], DEVICE_PROBES, _loops),
    rcase("devices_allow_all_deny_write", {"devices": [
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "b", "major": 7, "minor": 0, "access": "w"}]},
        ["devices/devices.list"], DEVICE_PROBES, _loops),
]


@pytest.mark.parametrize("resources,files,extra,mutate", APPLIED)
def test_resources_seen_alike(pair, config, request, resources, files, extra, mutate):
    """The cgroup files from the host and from inside, and the limits' effect, agree."""
    cfg = copy.deepcopy(config)
    cfg["linux"]["resources"].update(copy.deepcopy(resources))
    seen = observe_both(pair, cfg, files, extra, mutate)
    for key, value in seen["runc"]["host"].items():
        assert value != "<missing>" or key.startswith("blkio/"), f"runc: no {key}"
    assert_same(seen, request.node.callspec.id)


def test_limits_took_effect(pair, config):
    """A sanity check of the probes themselves (under runc): the hog was killed, forks
    stopped at pids.max, a denied device can't be opened."""
    cfg = copy.deepcopy(config)
    cfg["linux"]["resources"].update({"memory": {"limit": 48 * MiB}, "pids": {"limit": 8}})
    cid, _, out = start_probed(pair, "runc", cfg, [], {**OOM, **DEVICE_PROBES,
                                                       **FORKS}, _loops)
    got = observe.parse(out)
    assert got["oom"]["out"].strip() == "dd=137", got["oom"]
    assert got["forks"]["out"].split() == ["current=7", "max", "1"], got["forks"]
    assert "Operation not permitted" in got["open_r_loop0"]["out"], got["open_r_loop0"]


# Settings this host can't apply, or values out of range: both refuse at create.
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("cpuset_cpu_offline", {"cpu": {"cpus": "1000"}}),
    ("cpuset_node_missing", {"cpu": {"mems": "63"}}),
    ("cpu_shares_below_min", {"cpu": {"shares": 1}}),
    ("cpu_shares_above_max", {"cpu": {"shares": 1000000}}),
    ("memory_swappiness_out_of_range", {"memory": {"swappiness": 200}}),
    ("memory_swap_below_limit", {"memory": {"limit": 48 * MiB, "swap": 32 * MiB}}),
    ("blkio_leaf_weight", {"blockIO": {"leafWeight": 300}}),
    ("blkio_weight_device", {"blockIO": {"weightDevice": [
        {"major": 7, "minor": 0, "weight": 200}]}}),
    ("net_cls_unmounted", {"network": {"classID": 1048577}}),
    ("net_prio_unmounted", {"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
    *([("blkio_weight_unsupported", {"blockIO": {"weight": 500}})] if WEIGHT_FILE is None
      else []),
]


@pytest.mark.parametrize("resources", [r for _, r in REFUSED], ids=[n for n, _ in REFUSED])
def test_resources_error_or_not(pair, config, resources):
    """Both refuse, or both accept (a host with CFQ would take leafWeight): never one only."""
    cfg = _sleeping(config, resources)
    got = {name: create_rc(pair, name, cfg) for name in NAMES}
    ok = {name: rc == 0 for name, (rc, _) in got.items()}
    assert ok["pyrunc"] == ok["runc"], got
    if not ok["pyrunc"]:
        assert got["pyrunc"][1], "pyrunc failed without saying why"


def test_device_rule_without_access(pair, config):
    """runc 1.1.5 refuses a device rule without `access` ("device access at 2 field cannot
    be empty"); the runtime-spec makes access OPTIONAL and pyrunc reads it as "rwm". Pinned:
    a runc restriction, not a pyrunc bug."""
    cfg = _sleeping(config, {"devices": [{"allow": False}]})
    got = {name: create_rc(pair, name, cfg) for name in NAMES}
    assert got["runc"][0] != 0 and "access" in got["runc"][1], got
    assert got["pyrunc"][0] == 0, got


def test_device_rule_hole_in_wildcard(pair, config):
    cfg = _sleeping(config, {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": -1, "access": "rw"},
        {"allow": False, "type": "b", "major": 7, "minor": 1, "access": "rwm"}]})
    got = {name: create_rc(pair, name, cfg, _loops) for name in NAMES}
    assert got["runc"][0] != 0 and "punch hole" in got["runc"][1], got
    assert got["pyrunc"][0] != 0, "pyrunc accepted a deny rule the kernel does not enforce"


def test_default_device_rules(pair, config):
    """devices.list from the host, order ignored (the kernel keeps insertion order)."""
    seen = {}
    for name in NAMES:
        cid, pid = pair.start_detached(name, _sleeping(config, {}))
        seen[name] = sorted(read_host(pid, ["devices/devices.list"])["devices/devices.list"]
                            .split(" | "))
    assert seen["pyrunc"] == seen["runc"]


# Where runc 1.1.5 and pyrunc differ by design on this hybrid host: each case gives runc's
# result (create refused, or the file left at its default) and pyrunc's.
PINNED: list[tuple[str, dict[str, Any], str, str | None, str, str]] = [
    # (id, resources, file, runc's value (None: runc refuses create), pyrunc's value, why)
    ("hugepage_limits_on_cgroup2", {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]},
     "unified/hugetlb.2MB.max", None, str(4 * MiB),
     "hugetlb is bound to the cgroup2 mount here; runc's v1 manager only looks for a v1 "
     "hugetlb hierarchy ('cannot set hugetlb limit: container could not join or create "
     "cgroup'), pyrunc writes the v2 file in the hybrid cgroup2 mount"),
    ("unified_on_hybrid", {"unified": {"hugetlb.2MB.max": str(4 * MiB)}},
     "unified/hugetlb.2MB.max", None, str(4 * MiB),
     "runc 1.1.5 refuses linux.resources.unified on any non-v2 host ('cannot use unified on "
     "cgroup v1'); pyrunc applies it to the cgroup2 mount beside the v1 hierarchies"),
    ("cpu_idle", {"cpu": {"idle": 1}}, "cpu/cpu.idle", "0", "1",
     "runc 1.1.5 applies cpu.idle on cgroup v2 only and ignores it on v1; the kernel has "
     "cpu.idle in v1 too and pyrunc writes it"),
    ("cpu_burst", {"cpu": {"burst": 1000}}, "cpu/cpu.cfs_burst_us", "0", "1000",
     "cpu.burst arrived in runc 1.2 (runtime-spec 1.1); runc 1.1.5 drops the field"),
    ("memory_kernel_tcp", {"memory": {"kernelTCP": 16 * MiB}},
     "memory/memory.kmem.tcp.limit_in_bytes", UNLIMITED, str(16 * MiB),
     "runc 1.1.5 ignores both kernel memory fields with a warning ('Kernel memory settings "
     "are ignored and will be removed'); pyrunc ignores memory.kernel the same way but still "
     "applies kernelTCP, which the v1 kernel supports"),
    ("memory_kernel", {"memory": {"kernel": 16 * MiB}},
     "memory/memory.kmem.limit_in_bytes", UNLIMITED, UNLIMITED,
     "not a difference: both ignore memory.kernel (deprecated); kept next to kernelTCP"),
]


@pytest.mark.parametrize("resources,file,runc_value,pyrunc_value",
                         [(r, f, rv, pv) for _, r, f, rv, pv, _ in PINNED],
                         ids=[p[0] for p in PINNED])
def test_resources_runc_differs(pair, config, resources, file, runc_value, pyrunc_value):
    mount = file.split("/", 1)[0]
    if not own_file(mount, file.split("/", 1)[1]):
        pytest.skip(f"this host's cgroups have no {file}")
    cfg = _sleeping(config, resources)
    got: dict[str, str | None] = {}
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, cfg)
        cid = rt.new_id("pin")
        if rt("create", "--bundle", b.path, cid).returncode != 0:
            got[name] = None
            continue
        got[name] = read_host(rt.state(cid)["pid"], [file])[file]
        rt("delete", "--force", cid, check=True)
    assert got == {"runc": runc_value, "pyrunc": pyrunc_value}


# -- cgroupsPath ------------------------------------------------------------------------------

def _cgroup_dirs_named(token: str) -> list[str]:
    """Every directory in the host's hierarchies whose name is `token` (bounded walk)."""
    found = []
    for dirpath, dirnames, _ in os.walk(CGROOT):
        if os.path.basename(dirpath) == token:
            found.append(dirpath)
            dirnames[:] = []
        elif dirpath.count("/") > 9:
            dirnames[:] = []
    return sorted(found)


def _rmdirs(paths: list[str]) -> None:
    for top in paths:
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


@pytest.mark.parametrize("template", ["/{t}", "/{t}/leaf", "{t}", "{t}/leaf"],
                         ids=["absolute", "absolute_nested", "relative", "relative_nested"])
def test_cgroups_path(pair, config, template):
    """Where each runtime puts the container: /proc/<init>/cgroup from the host and
    /proc/self/cgroup inside, the pids limit read inside (the right directory is mounted),
    and what is left of the path after delete (runc removes only the leaf)."""
    seen: dict[str, Any] = {}
    tokens = []
    try:
        for name in NAMES:
            token = "cgp" + uuid.uuid4().hex[:10]
            tokens.append(token)
            cfg = _sleeping(config, {"pids": {"limit": 37}})
            cfg["linux"]["cgroupsPath"] = template.format(t=token)
            cid, pid, out = start_probed(pair, name, cfg, ["pids/pids.max"],
                                         {"cgroup": "cat /proc/self/cgroup"})
            subst = {token: "<T>", cid: "<ID>"}
            host = {}
            for key, path in cgroup_paths(pid).items():
                for old, new in subst.items():
                    path = path.replace(old, new)
                host[key] = path
            pair.rt[name]("delete", "--force", cid, check=True)
            left = [os.path.relpath(d, CGROOT) for d in _cgroup_dirs_named(token)]
            seen[name] = {"host": host,
                          "inside": observe.normalise(observe.parse(out), subst),
                          "left_after_delete": sorted(x.replace(token, "<T>") for x in left)}
    finally:
        _rmdirs([d for t in tokens for d in _cgroup_dirs_named(t)])
    assert all(p.endswith("<T>/leaf") or p.endswith("<T>")
               for p in seen["runc"]["host"].values()), seen["runc"]["host"]
    assert_same(seen, f"cgroupsPath {template}")
    assert not [d for t in tokens for d in _cgroup_dirs_named(t)], "cgroups left behind"


