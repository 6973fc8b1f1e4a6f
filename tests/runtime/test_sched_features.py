"""runtime-spec v1.1+ process attributes: process.scheduler, process.ioPriority,
process.execCPUAffinity, linux.personality, linux.memoryPolicy. Each is observed from the
host (/proc/<pid>/sched, chrt, ionice, /proc/<pid>/status) and from inside, for the init
and for exec'd processes; where the host can't, the clear refusal naming the JSON path is
tested instead; every bad input fails create with that path and leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from tests import hostcaps
from tests.rig import Bundle, clone_rootfs, default_config

POLICY = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
          "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def sched_of(pid: int | str) -> tuple[int, int]:
    """(policy, nice) of a task as the kernel reports them in /proc/<pid>/sched and stat."""
    nice = int(_read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[16])
    return int(sched_fields(pid)["policy"]), nice


def sched_fields(pid: int | str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in
            (ln.partition(":") for ln in _read(f"/proc/{pid}/sched").splitlines()) if v}


def chrt(pid: int) -> str:
    """`chrt -p PID` (util-linux), or "" where the host has no chrt."""
    if not shutil.which("chrt"):
        return ""
    return subprocess.run(["chrt", "-p", str(pid)], capture_output=True, text=True,
                          timeout=10).stdout


def ionice(pid: int) -> str:
    return subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


def cpus_allowed(pid: int | str) -> str:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split()[1]
    raise AssertionError("no Cpus_allowed_list")


def task_mempolicy(numa_maps_line: str) -> str:
    """The policy column of one /proc/<pid>/numa_maps line (it may contain a space)."""
    rest = numa_maps_line.split(" ", 1)[1]
    for stop in (" file=", " anon=", " heap", " stack", " N0=", " mapped=", " kernelpagesize"):
        if stop in rest:
            rest = rest.split(stop, 1)[0]
    return rest.strip()


def start(pyrunc, bundle, args=("sleep", "60")) -> tuple[str, int]:
    bundle.config["process"]["args"] = list(args)
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
    return cid, pyrunc.state(cid)["pid"]


def exec_detached(pyrunc, cid: str, tmp_path, *args: str, process: dict | None = None) -> int:
    """`exec -d` a process; its host pid (from --pid-file)."""
    tag = uuid.uuid4().hex[:8]
    pidf = tmp_path / f"exec-{tag}.pid"
    extra: list[str] = []
    if process is not None:
        pj = tmp_path / f"proc-{tag}.json"
        pj.write_text(json.dumps(process))
        extra = ["--process", str(pj)]
    pyrunc("exec", "-d", "--pid-file", str(pidf), *extra, cid, *args, check=True)
    return int(pidf.read_text())


def refused(pyrunc, bundle, path: str) -> str:
    """`run` must fail naming `path`, with no traceback and nothing left behind (the
    fixture checks cgroups at teardown)."""
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id())
    err = p.stderr.decode()
    assert p.returncode != 0, err
    assert path in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not os.listdir(pyrunc.root), os.listdir(pyrunc.root)
    return err


def process_json(bundle, **extra) -> dict:
    proc = {"args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": bundle.config["process"]["env"]}
    proc.update(extra)
    return proc


# -- process.scheduler ----------------------------------------------------------------------

def test_scheduler_fair_policies_init_and_exec(pyrunc, bundle, tmp_path):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    cid, pid = start(pyrunc, bundle)
    assert sched_of(pid) == (POLICY["SCHED_BATCH"], 7)
    if chrt(pid):
        assert "SCHED_BATCH" in chrt(pid)
    # exec without --process starts from the container's process: the same scheduler
    out = pyrunc("exec", cid, "sh", "-c", "grep policy /proc/self/sched; "
                 "cut -d' ' -f19 /proc/self/stat", check=True).stdout.decode().split()
    assert out[-2:] == [str(POLICY["SCHED_BATCH"]), "7"]
    # exec --process with a scheduler of its own
    epid = exec_detached(pyrunc, cid, tmp_path, process=process_json(
        bundle, scheduler={"policy": "SCHED_IDLE"}))
    assert sched_of(epid)[0] == POLICY["SCHED_IDLE"]
    epid = exec_detached(pyrunc, cid, tmp_path, process=process_json(
        bundle, scheduler={"policy": "SCHED_OTHER", "nice": -5}))
    assert sched_of(epid) == (POLICY["SCHED_OTHER"], -5)


# the shell's nice, then a forked child's: `( )` forks even where busybox runs cut in-process
# (not when last: ash runs a last subshell in place, so "; true")
NICE_OF_SHELL_AND_CHILD = "cut -d' ' -f19 /proc/$$/stat; (cut -d' ' -f19 /proc/self/stat); true"


def test_scheduler_flags(pyrunc, bundle):
    """SCHED_FLAG_RESET_ON_FORK: the shell keeps its negative nice, what it forks gets 0
    back (the kernel's rule for fair policies); the utilization clamps work where the kernel
    has them (CONFIG_UCLAMP_TASK), else they are refused naming the field."""
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_OTHER", "nice": -3,
                                             "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    out = pyrunc.run_script(bundle, NICE_OF_SHELL_AND_CHILD)
    assert out.split() == ["-3", "0"]
    bundle.config["process"]["scheduler"]["flags"] = []
    out = pyrunc.run_script(bundle, NICE_OF_SHELL_AND_CHILD)
    assert out.split() == ["-3", "-3"]  # without the flag the child inherits it
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_OTHER",
                                             "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id())
    if p.returncode != 0:
        assert p.stderr.decode().startswith(
            "pyrunc: process.scheduler: cannot set SCHED_OTHER: Operation not supported"), \
            p.stderr
        assert not os.listdir(pyrunc.root)


def _rt_group_sched() -> bool:
    """RT group scheduling: a fresh cpu cgroup gets no realtime runtime of its own."""
    return hostcaps.v1_has("cpu", "cpu.rt_runtime_us")


@pytest.mark.parametrize("policy", ["SCHED_FIFO", "SCHED_RR"])
def test_scheduler_realtime(pyrunc, bundle, policy):
    bundle.config["process"]["scheduler"] = {"policy": policy, "priority": 10}
    if not hostcaps.has_cap("CAP_SYS_NICE"):
        refused(pyrunc, bundle, "process.scheduler")
        return
    if _rt_group_sched():
        # no realtime runtime in the container's cpu cgroup: the kernel says no
        err = refused(pyrunc, bundle, "process.scheduler: cannot set " + policy)
        assert "realtimeRuntime" in err
        bundle.config["linux"]["resources"]["cpu"] = {"realtimeRuntime": 10000,
                                                      "realtimePeriod": 1000000}
    cid, pid = start(pyrunc, bundle)
    assert sched_of(pid)[0] == POLICY[policy]
    assert int(sched_fields(pid)["prio"]) == 99 - 10  # the kernel's prio for rt priority 10
    if chrt(pid):
        assert policy in chrt(pid) and chrt(pid).rstrip().endswith("10")


def test_scheduler_deadline(pyrunc, bundle):
    bundle.config["process"]["scheduler"] = {
        "policy": "SCHED_DEADLINE", "runtime": 1_000_000, "deadline": 10_000_000,
        "period": 10_000_000}
    if not hostcaps.has_cap("CAP_SYS_NICE"):
        refused(pyrunc, bundle, "process.scheduler")
        return
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("run", "-d", "--bundle", bundle.path, cid)
    if p.returncode != 0:  # no deadline bandwidth on this host: the refusal names the path
        assert b"process.scheduler: cannot set SCHED_DEADLINE" in p.stderr, p.stderr
        return
    pid = pyrunc.state(cid)["pid"]
    assert int(sched_fields(pid)["policy"]) == POLICY["SCHED_DEADLINE"]
    if chrt(pid):  # util-linux shows the parameters: runtime/deadline/period
        assert "SCHED_DEADLINE" in chrt(pid)
        assert "1000000/10000000/10000000" in chrt(pid), chrt(pid)


# -- process.ioPriority ---------------------------------------------------------------------

@pytest.mark.parametrize("cls,prio,shown", [
    ("IOPRIO_CLASS_BE", 3, "best-effort: prio 3"),
    ("IOPRIO_CLASS_IDLE", 0, "idle"),
    ("IOPRIO_CLASS_RT", 2, "realtime: prio 2"),
])
def test_io_priority_init_and_exec(pyrunc, bundle, tmp_path, cls, prio, shown):
    bundle.config["process"]["ioPriority"] = {"class": cls, "priority": prio}
    if cls == "IOPRIO_CLASS_RT" and not (hostcaps.has_cap("CAP_SYS_ADMIN")
                                         or hostcaps.has_cap("CAP_SYS_NICE")):
        refused(pyrunc, bundle, "process.ioPriority")
        return
    cid, pid = start(pyrunc, bundle)
    assert ionice(pid) == shown
    epid = exec_detached(pyrunc, cid, tmp_path, "sleep", "30")
    assert ionice(epid) == shown
    epid = exec_detached(pyrunc, cid, tmp_path, process=process_json(
        bundle, ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6}))
    assert ionice(epid) == "best-effort: prio 6"
    # and from inside, with busybox's ionice
    out = pyrunc("exec", cid, "ionice", "-p", "1", check=True).stdout.decode()
    assert out.split(":")[0].strip() in shown.split(":")[0], out


# -- linux.personality ----------------------------------------------------------------------

_LINUX32 = {"x86_64": "i686", "aarch64": "armv8l"}


@pytest.mark.skipif(os.uname().machine not in _LINUX32, reason="no 32-bit personality "
                    "name known for this architecture")
def test_personality_linux32_init_and_exec(pyrunc, bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    cid, _ = start(pyrunc, bundle)
    want = _LINUX32[os.uname().machine]
    out = pyrunc("exec", cid, "sh", "-c", "uname -m; cat /proc/1/personality",
                 check=True).stdout.decode().split()
    assert out == [want, "00000008"]


def test_personality_linux(pyrunc, bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX", "flags": []}
    assert pyrunc.run_script(bundle, "uname -m").strip() == os.uname().machine


# -- linux.memoryPolicy ---------------------------------------------------------------------

def _mem_nodes() -> list[int]:
    from runtime.linux.process_attrs import parse_list
    return parse_list(_read("/sys/devices/system/node/has_memory").strip(), "x", "node")


def _weighted_interleave() -> bool:
    return os.path.isdir("/sys/kernel/mm/mempolicy/weighted_interleave")


@pytest.mark.parametrize("mode,flags,shown", [
    ("MPOL_BIND", [], "bind:{n}"),
    ("MPOL_INTERLEAVE", [], "interleave:{n}"),
    ("MPOL_PREFERRED", [], "prefer:{n}"),
    ("MPOL_PREFERRED_MANY", [], "prefer (many):{n}"),
    ("MPOL_WEIGHTED_INTERLEAVE", [], "weighted interleave:{n}"),
    ("MPOL_LOCAL", [], "local"),
    ("MPOL_DEFAULT", [], "default"),
    ("MPOL_BIND", ["MPOL_F_STATIC_NODES"], "bind=static:{n}"),
    ("MPOL_INTERLEAVE", ["MPOL_F_RELATIVE_NODES"], "interleave=relative:{n}"),
    ("MPOL_BIND", ["MPOL_F_NUMA_BALANCING"], "bind=balancing:{n}"),
])
def test_memory_policy_init_and_exec(pyrunc, bundle, mode, flags, shown):
    node = _mem_nodes()[0]
    pol = {"mode": mode, "flags": flags}
    if "{n}" in shown:
        pol["nodes"] = str(node)
    bundle.config["linux"]["memoryPolicy"] = pol
    if mode == "MPOL_WEIGHTED_INTERLEAVE" and not _weighted_interleave():
        refused(pyrunc, bundle, "linux.memoryPolicy: cannot set MPOL_WEIGHTED_INTERLEAVE")
        return
    cid, pid = start(pyrunc, bundle)
    want = shown.format(n=node)
    with open(f"/proc/{pid}/numa_maps") as f:  # the task policy, seen from the host
        assert task_mempolicy(f.readline()) == want
    out = pyrunc("exec", cid, "head", "-n1", "/proc/self/numa_maps", check=True).stdout
    assert task_mempolicy(out.decode()) == want


def test_memory_policy_node_list_syntax(pyrunc, bundle):
    """"0-1,3" syntax: the kernel keeps the nodes that have memory here (an intersection)."""
    nodes = _mem_nodes()
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND",
                                              "nodes": f"{nodes[0]}-{nodes[0] + 1},63"}
    out = pyrunc.run_script(bundle, "head -n1 /proc/self/numa_maps")
    assert task_mempolicy(out) == "bind:" + _read("/sys/devices/system/node/has_memory").strip()


def test_memory_policy_missing_node_refused(pyrunc, bundle):
    absent = max(_mem_nodes()) + 1
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": str(absent)}
    err = refused(pyrunc, bundle, f"linux.memoryPolicy: cannot set MPOL_BIND nodes {absent}")
    assert "nodes with memory here" in err


# -- process.execCPUAffinity ----------------------------------------------------------------

def _two_cpus() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    hostcaps.need(cpus[:2] == [0, 1], f"CPUs 0 and 1 for this test (we may run on {cpus})")


@pytest.mark.parametrize("aff,want", [
    ({"initial": "1", "final": "0"}, "0"),
    ({"final": "1"}, "1"),
    ({"initial": "1"}, "0-1"),  # no final: the cgroup's default again
    ({"initial": "0,1", "final": "0-1"}, "0-1"),
])
def test_exec_cpu_affinity(pyrunc, bundle, tmp_path, aff, want):
    _two_cpus()
    cid, pid = start(pyrunc, bundle)
    epid = exec_detached(pyrunc, cid, tmp_path, process=process_json(
        bundle, execCPUAffinity=aff))
    assert cpus_allowed(epid) == want


def test_exec_cpu_affinity_not_for_init(pyrunc, bundle):
    """The spec keeps execCPUAffinity off the init; exec without --process inherits it."""
    _two_cpus()
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0", "final": "1"}
    cid, pid = start(pyrunc, bundle)
    assert cpus_allowed(pid) == "0-1"
    out = pyrunc("exec", cid, "grep", "Cpus_allowed_list", "/proc/self/status", check=True)
    assert out.stdout.decode().split()[1] == "1"


def test_exec_cpu_affinity_initial_is_outside_the_cgroup(pyrunc, bundle, tmp_path):
    """A cpuset of CPU 0: `initial` 1 is applied before the move into the cgroup (so it
    works), `final` 1 after it (so it can't); the refused process is gone."""
    _two_cpus()
    hostcaps.need("cpuset" in hostcaps.v1_controllers() or "cpuset" in
                  hostcaps.cgroup2_controllers(), "a cpuset cgroup controller")
    bundle.config["linux"]["resources"]["cpu"] = {"cpus": "0"}
    cid, pid = start(pyrunc, bundle)
    epid = exec_detached(pyrunc, cid, tmp_path, process=process_json(
        bundle, execCPUAffinity={"initial": "1"}))
    assert cpus_allowed(epid) == "0"
    pj = tmp_path / "bad.json"
    pj.write_text(json.dumps(process_json(bundle, execCPUAffinity={"initial": "1",
                                                                   "final": "1"})))
    p = pyrunc("exec", "--process", str(pj), cid, "true")
    err = p.stderr.decode()
    assert p.returncode != 0 and "process.execCPUAffinity.final: cannot run on CPUs 1" in err
    assert "Traceback" not in err
    ps = pyrunc("ps", "--format", "json", cid, check=True)
    assert sorted(json.loads(ps.stdout)) == sorted([pid, epid])


def test_exec_cpu_affinity_initial_refused(pyrunc, bundle, tmp_path):
    cid, pid = start(pyrunc, bundle)
    absent = hostcaps.possible_cpus() + 3
    pj = tmp_path / "bad.json"
    pj.write_text(json.dumps(process_json(bundle, execCPUAffinity={"initial": str(absent)})))
    p = pyrunc("exec", "--process", str(pj), cid, "true")
    assert p.returncode != 0
    assert b"process.execCPUAffinity.initial: cannot run on CPUs" in p.stderr, p.stderr
    ps = pyrunc("ps", "--format", "json", cid, check=True)
    assert json.loads(ps.stdout) == [pid]


# -- in a user namespace: no privilege over the host's scheduler ----------------------------

@pytest.fixture
def userns_bundle(rootfs_template):
    """A user-namespaced bundle under a world-traversable dir (the mapped root must reach
    the rootfs, which pytest's 0700 tmp dirs forbid)."""
    hostcaps.need(hostcaps.has_namespace("user"), "user namespaces")
    top = tempfile.mkdtemp(prefix="pyrunc-sched-userns-", dir="/tmp")
    os.chmod(top, 0o755)
    clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
    cfg = default_config(["true"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    yield Bundle(top, cfg).write()
    shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_lowering_works(pyrunc, userns_bundle):
    """What any process may do to itself works under a mapped root too."""
    userns_bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    userns_bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE",
                                                     "priority": 6}
    userns_bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_LOCAL"}
    cid, pid = start(pyrunc, userns_bundle)
    assert sched_of(pid) == (POLICY["SCHED_BATCH"], 5)
    assert ionice(pid) == "best-effort: prio 6"
    with open(f"/proc/{pid}/numa_maps") as f:
        assert task_mempolicy(f.readline()) == "local"


@pytest.mark.parametrize("key,value,message", [
    ("scheduler", {"policy": "SCHED_OTHER", "nice": -5},
     "process.scheduler: cannot set SCHED_OTHER: Operation not permitted (needs CAP_SYS_NICE "
     "in the host's user namespace)"),
    ("scheduler", {"policy": "SCHED_FIFO", "priority": 5},
     "process.scheduler: cannot set SCHED_FIFO: Operation not permitted"),
    ("ioPriority", {"class": "IOPRIO_CLASS_RT", "priority": 0},
     "process.ioPriority: cannot set IOPRIO_CLASS_RT priority 0: Operation not permitted "
     "(IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE in the host's user namespace)"),
])
def test_user_namespace_raising_refused(pyrunc, userns_bundle, key, value, message):
    userns_bundle.config["process"][key] = value
    assert message in refused(pyrunc, userns_bundle, message)


# -- bad input: a clear error naming the field, nothing made ---------------------------------

BAD = [
    ("process", "scheduler", {"policy": "SCHED_FAST"}, "process.scheduler.policy"),
    ("process", "scheduler", {"policy": "SCHED_ISO"}, "process.scheduler.policy: SCHED_ISO"),
    ("process", "scheduler", {"policy": "SCHED_OTHER", "nice": 20}, "process.scheduler.nice"),
    ("process", "scheduler", {"policy": "SCHED_FIFO"}, "process.scheduler.priority"),
    ("process", "scheduler", {"policy": "SCHED_BATCH", "priority": 5},
     "process.scheduler.priority"),
    ("process", "scheduler", {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_X"]},
     "process.scheduler.flags[0]"),
    ("process", "scheduler", {"policy": "SCHED_DEADLINE", "runtime": 5000, "deadline": 1000},
     "process.scheduler.deadline"),
    ("process", "scheduler", {"policy": "SCHED_DEADLINE"}, "process.scheduler.runtime"),
    ("process", "scheduler", "SCHED_OTHER", "process.scheduler: must be an object"),
    ("process", "ioPriority", {"class": "IOPRIO_CLASS_NONE", "priority": 0},
     "process.ioPriority.class"),
    ("process", "ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 8},
     "process.ioPriority.priority"),
    ("process", "ioPriority", {"class": "IOPRIO_CLASS_BE"}, "process.ioPriority.priority"),
    ("process", "execCPUAffinity", {"initial": "0-"}, "process.execCPUAffinity.initial"),
    ("process", "execCPUAffinity", {"final": "3-1"}, "process.execCPUAffinity.final"),
    ("process", "execCPUAffinity", {"final": 1}, "process.execCPUAffinity.final"),
    ("linux", "personality", {"domain": "LINUX64"}, "linux.personality.domain"),
    ("linux", "personality", {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]},
     "linux.personality.flags"),
    ("linux", "memoryPolicy", {"mode": "MPOL_NEAR", "nodes": "0"}, "linux.memoryPolicy.mode"),
    ("linux", "memoryPolicy", {"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes"),
    ("linux", "memoryPolicy", {"mode": "MPOL_BIND", "nodes": "0-x"},
     "linux.memoryPolicy.nodes"),
    ("linux", "memoryPolicy", {"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes"),
    ("linux", "memoryPolicy", {"mode": "MPOL_PREFERRED", "nodes": "0,1"},
     "linux.memoryPolicy.nodes"),
    ("linux", "memoryPolicy", {"mode": "MPOL_BIND", "nodes": "0",
                               "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "linux.memoryPolicy.flags"),
    ("linux", "memoryPolicy", {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_X"]},
     "linux.memoryPolicy.flags[0]"),
    ("linux", "memoryPolicy", {"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]},
     "linux.memoryPolicy.flags"),
    # values of the wrong JSON type, unhashable ones included
    ("process", "scheduler", {"policy": ["SCHED_OTHER"]}, "process.scheduler.policy"),
    ("process", "scheduler", {"policy": "SCHED_OTHER", "flags": [{}]},
     "process.scheduler.flags[0]"),
    ("process", "scheduler", {"policy": "SCHED_IDLE", "priority": False},
     "process.scheduler.priority"),
    ("process", "ioPriority", {"class": ["IOPRIO_CLASS_BE"], "priority": 1},
     "process.ioPriority.class"),
    ("linux", "personality", {"domain": {}}, "linux.personality.domain"),
    ("linux", "memoryPolicy", {"mode": [], "nodes": "0"}, "linux.memoryPolicy.mode"),
    ("linux", "memoryPolicy", {"mode": "MPOL_BIND", "nodes": 0}, "linux.memoryPolicy.nodes"),
]


@pytest.mark.parametrize("section,key,value,path", BAD, ids=[b[3] for b in BAD])
def test_bad_input_refused_at_create(pyrunc, bundle, section, key, value, path):
    bundle.config[section][key] = value
    refused(pyrunc, bundle, "config.json: " + path)


@pytest.mark.parametrize("key,value,path", [
    ("scheduler", {"policy": "SCHED_FAST"}, "process.scheduler.policy"),
    ("ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": -1}, "process.ioPriority.priority"),
    ("execCPUAffinity", {"initial": "a"}, "process.execCPUAffinity.initial"),
])
def test_bad_input_refused_at_exec(pyrunc, bundle, tmp_path, key, value, path):
    cid, pid = start(pyrunc, bundle)
    pj = tmp_path / "bad.json"
    pj.write_text(json.dumps(process_json(bundle, **{key: value})))
    p = pyrunc("exec", "--process", str(pj), cid, "true")
    err = p.stderr.decode()
    assert p.returncode != 0 and path in err and "Traceback" not in err, err
    ps = pyrunc("ps", "--format", "json", cid, check=True)
    assert json.loads(ps.stdout) == [pid]


def test_cpu_and_node_list_syntax():
    from runtime.errors import ConfigError
    from runtime.linux.process_attrs import parse_list
    assert parse_list("0-3,7", "p", "CPU") == [0, 1, 2, 3, 7]
    assert parse_list("3,1-2,2", "p", "node") == [1, 2, 3]
    for bad in ("", "1-0", "a", "0,,1", " 1", "1-", "-1", "+1", "1_0", "65536"):
        with pytest.raises(ConfigError, match="^config.json: p: "):
            parse_list(bad, "p", "CPU")


def test_plain_config_does_not_load_the_module(bundle):
    """The hot path's import budget: create without these fields never imports them."""
    code = ("import json, sys; from runtime import spec; "
            f"spec.check(json.load(open('{bundle.path}/config.json'))); "
            "print('runtime.linux.process_attrs' in sys.modules)")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable),
                                       "python"), "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         timeout=30, check=True).stdout
    assert out.strip() == "False"


def test_features_schema_and_runtime_agree(pyrunc):
    """`pyrunc features` (features-linux.md memoryPolicy), our JSON Schemas and the tables
    the runtime applies name the same values."""
    from runtime.linux import process_attrs as pa
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    specs = os.path.join(repo, "specs")
    with open(os.path.join(specs, "defs-linux.json")) as f:
        mp = json.load(f)["properties"]["memoryPolicy"]["properties"]
    with open(os.path.join(specs, "config-schema.json")) as f:
        proc = json.load(f)["$defs"]["Process"]["properties"]
    feats = json.loads(pyrunc("features", check=True).stdout)["linux"]["memoryPolicy"]
    assert set(feats["modes"]) == set(mp["mode"]["enum"]) == set(pa.MPOL_MODES)
    assert set(feats["flags"]) == set(mp["flags"]["items"]["enum"]) == set(pa.MPOL_FLAGS)
    assert set(proc["scheduler"]["properties"]["policy"]["enum"]) == set(pa.SCHED_POLICIES)
    assert set(proc["scheduler"]["properties"]["flags"]["items"]["enum"]) == set(pa.SCHED_FLAGS)
    assert set(proc["ioPriority"]["properties"]["class"]["enum"]) == set(pa.IOPRIO_CLASSES)
    assert set(proc["execCPUAffinity"]["properties"]) == {"initial", "final"}


def test_schema_accepts_and_rejects(bundle):
    from runtime.validate import validate_config
    cfg = bundle.config
    cfg["process"]["scheduler"] = {"policy": "SCHED_RR", "priority": 5, "flags": []}
    cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 4}
    cfg["process"]["execCPUAffinity"] = {"initial": "0-3,7", "final": ""}
    cfg["linux"]["personality"] = {"domain": "LINUX32"}
    cfg["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0-1,3",
                                    "flags": ["MPOL_F_STATIC_NODES"]}
    assert validate_config(cfg) == []
    cfg["process"]["execCPUAffinity"]["initial"] = "0-"
    cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE"}
    cfg["linux"]["memoryPolicy"] = {"nodes": "x"}
    problems = "\n".join(validate_config(cfg))
    for line in ("process.execCPUAffinity.initial: must be a list of CPUs",
                 "process.ioPriority.priority: is required",
                 "linux.memoryPolicy.mode: is required",
                 "linux.memoryPolicy.nodes: must be a list of NUMA nodes"):
        assert f"config.json: {line}" in problems, problems
