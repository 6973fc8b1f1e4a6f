"""runtime-spec v1.1-v1.3 process attributes, runc 1.1.5 against pyrunc.

runc 1.1.5 predates process.scheduler, process.ioPriority, process.execCPUAffinity (1.2),
linux.personality (1.2) and linux.memoryPolicy (1.4): its config types have no such fields,
so it drops them unread, valid or not, and the container runs with the caller's settings.
pyrunc implements them (tests/runtime/test_sched_features.py has the effects in depth). These tests
pin runc's behaviour next to ours, so a runc upgrade that starts honouring them shows here.
"""

from __future__ import annotations

import copy
import json
import os

import pytest

pytestmark = pytest.mark.peer

PROBE = ("ionice -p $$; grep policy /proc/self/sched | tr -s ' ' | cut -d' ' -f3; "
         "cut -d' ' -f19 /proc/self/stat; uname -m; head -n1 /proc/self/numa_maps | "
         "cut -d' ' -f2")


def _observe(outcome) -> dict[str, str]:
    assert outcome.rc == 0, (outcome.runtime, outcome.stderr)
    keys = ("ionice", "policy", "nice", "machine", "mempolicy")
    return dict(zip(keys, outcome.stdout.strip().splitlines(), strict=True))


def _first_node() -> str:
    return open("/sys/devices/system/node/has_memory").read().strip().split(",")[0] \
        .split("-")[0]


def test_fields_runc_ignores(pair, config):
    """The same config under both: runc shows the caller's settings, pyrunc the config's."""
    if os.uname().machine != "x86_64":
        pytest.skip("the LINUX32 name (i686) is checked on x86_64 only")
    config["process"]["args"] = ["sh", "-c", PROBE]
    plain = _observe(pair.run("runc", config))  # the caller's settings, as runc passes them
    config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    config["linux"]["personality"] = {"domain": "LINUX32"}
    config["linux"]["memoryPolicy"] = {"mode": "MPOL_INTERLEAVE", "nodes": _first_node()}
    outs = pair.run_both(config)
    assert _observe(outs["runc"]) == plain
    assert _observe(outs["pyrunc"]) == {
        "ionice": "idle", "policy": "3", "nice": "7", "machine": "i686",
        "mempolicy": f"interleave:{_first_node()}"}


def test_exec_cpu_affinity_runc_ignores(pair, config, tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    if cpus[:2] != [0, 1]:
        pytest.skip(f"needs CPUs 0 and 1 (we may run on {cpus})")
    config["process"]["args"] = ["sleep", "60"]
    proc = copy.deepcopy(config["process"])
    proc["args"] = ["grep", "Cpus_allowed_list", "/proc/self/status"]
    proc["execCPUAffinity"] = {"initial": "1", "final": "0"}
    pj = tmp_path / "process.json"
    pj.write_text(json.dumps(proc))
    seen = {}
    for name in ("runc", "pyrunc"):
        cid, _ = pair.start_detached(name, config)
        p = pair.rt[name]("exec", "--process", str(pj), cid)
        assert p.returncode == 0, (name, p.stderr)
        seen[name] = p.stdout.decode().split()[1]
    assert seen == {"runc": "0-1", "pyrunc": "0"}


BAD = [
    ("process", "scheduler", {"policy": "SCHED_FAST"}, "process.scheduler.policy"),
    ("process", "ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 9},
     "process.ioPriority.priority"),
    ("process", "execCPUAffinity", {"initial": "x"}, "process.execCPUAffinity.initial"),
    ("linux", "personality", {"domain": "LINUX64"}, "linux.personality.domain"),
    ("linux", "memoryPolicy", {"mode": "MPOL_NOPE"}, "linux.memoryPolicy.mode"),
]


@pytest.mark.parametrize("section,key,value,path", BAD, ids=[b[3] for b in BAD])
def test_bad_values_runc_runs_pyrunc_refuses(pair, config, section, key, value, path):
    """config.md: runtimes MUST error on invalid or unsupported values. runc 1.1.5 never
    reads these fields, so it runs the container; pyrunc refuses naming the field and
    leaves nothing behind (the pair's cleanup checks state dirs and cgroups)."""
    config[section][key] = value
    outs = pair.run_both(config)
    assert outs["runc"].rc == 0, outs["runc"].stderr
    err = outs["pyrunc"].stderr
    assert outs["pyrunc"].rc != 0 and f"config.json: {path}" in err, err
    assert "Traceback" not in err and not os.listdir(pair.rt["pyrunc"].root)


def test_features_memory_policy(pair):
    """features-linux.md's memoryPolicy: runc 1.1.5 has no such entry; pyrunc lists the
    modes and flags it recognises."""
    got = {}
    for name in ("runc", "pyrunc"):
        p = pair.rt[name]("features", check=True)
        got[name] = json.loads(p.stdout)["linux"].get("memoryPolicy")
    assert got["runc"] is None
    assert set(got["pyrunc"]["modes"]) == {
        "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
        "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"}
    assert set(got["pyrunc"]["flags"]) == {"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES",
                                           "MPOL_F_STATIC_NODES"}
