"""Our JSON Schemas in specs/ and `pyrunc validate`.

Good configs (ours, runc's) must pass both our schema and the official one from Debian's
golang-github-opencontainers-specs-dev; broken configs must fail ours at the right JSON path,
and the official schema must agree wherever it checks that field at all.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from runtime.spec import default_spec
from runtime.validate import SPECS, json_path, validate_bundle, validate_config, validate_state
from tests.rig import PYRUNC, RUNC, Runtime, cgroup_leftovers

OFFICIAL = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")
needs_official = pytest.mark.skipif(not (OFFICIAL / "config-schema.json").is_file(),
                                    reason="golang-github-opencontainers-specs-dev not installed")
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc not installed")


def official_validator(name: str) -> Draft4Validator:
    """The official draft-04 schema, its relative $refs resolved among the files beside it."""
    registry = Registry().with_resources(
        (f.name, Resource.from_contents(json.loads(f.read_text()), default_specification=DRAFT4))
        for f in OFFICIAL.glob("*.json"))
    return Draft4Validator(registry.contents(name), registry=registry)


def official_paths(config: Any, name: str = "config-schema.json") -> list[list]:
    """Instance paths of every official error, descending into anyOf/oneOf contexts."""
    out: list[list] = []

    def walk(errors) -> None:
        for e in errors:
            out.append(list(e.absolute_path))
            walk(e.context or [])
    walk(official_validator(name).iter_errors(config))
    return out


def runc_spec(tmp_path: Path, rootless: bool) -> dict[str, Any]:
    d = tmp_path / ("rootless" if rootless else "root")
    d.mkdir()
    subprocess.run([RUNC, "spec", "--bundle", str(d), *(["--rootless"] if rootless else [])],
                   check=True, capture_output=True, timeout=30)
    return json.loads((d / "config.json").read_text())


# --- our schema files are themselves well-formed --------------------------------------------

@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.glob("*.json")))
def test_schema_files_are_valid_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(json.loads((SPECS / name).read_text()))


# --- (1) good configs pass ours and the official schema ------------------------------------

@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid(rootless: bool) -> None:
    assert validate_config(default_spec(rootless=rootless)) == []


@needs_official
@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid_officially(rootless: bool) -> None:
    assert official_paths(default_spec(rootless=rootless)) == []


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_runc_spec_is_valid(tmp_path: Path, rootless: bool) -> None:
    config = runc_spec(tmp_path, rootless)
    assert validate_config(config) == []
    if (OFFICIAL / "config-schema.json").is_file():
        assert official_paths(config) == []


@needs_official
@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_spec_command_output_is_valid_officially(tmp_path: Path, rootless: bool) -> None:
    """spec.bats' "spec validator", offline: the config.json `pyrunc spec` writes passes the
    official schema (Debian's copy, not one cloned from GitHub), as runc's does."""
    for name, binary in (("pyrunc", PYRUNC), ("runc", RUNC)):
        d = tmp_path / name
        d.mkdir()
        subprocess.run([binary, "spec", "--bundle", str(d),
                        *(["--rootless"] if rootless else [])],
                       check=True, capture_output=True, timeout=30)
        config = json.loads((d / "config.json").read_text())
        assert official_paths(config) == [], name


def test_full_linux_config_is_valid() -> None:
    """Every section we describe, filled in the way real engines fill it."""
    c = default_spec()
    c["process"].update(consoleSize={"height": 24, "width": 80}, oomScoreAdj=-999,
                        apparmorProfile="", selinuxLabel="",
                        user={"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5]})
    c["hooks"] = {"prestart": [{"path": "/usr/bin/true", "args": ["true"], "env": ["A=b"],
                                "timeout": 5}], "poststop": [{"path": "/bin/true"}]}
    c["annotations"] = {"org.example.key": ""}
    c["domainname"] = "example.org"
    c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        sysctl={"net.ipv4.ip_forward": "1"}, cgroupsPath="/pyrunc/x",
        rootfsPropagation="rslave", mountLabel="",
        devices=[{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                  "fileMode": 0o666, "uid": 0, "gid": 0}, {"type": "p", "path": "/dev/fifo"}],
        seccomp={"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                 "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                 "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                               "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]},
        intelRdt={"closID": "g", "l3CacheSchema": "L3:0=ff", "memBwSchema": "MB:0=70"},
        personality={"domain": "LINUX32", "flags": []},
        timeOffsets={"monotonic": {"secs": 10, "nanosecs": 0}})
    c["linux"]["namespaces"].append({"type": "time"})
    c["linux"]["resources"].update(
        memory={"limit": 1 << 30, "swap": -1, "swappiness": 10, "disableOOMKiller": False},
        cpu={"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-1", "mems": "0"},
        pids={"limit": 100},
        blockIO={"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
        hugepageLimits=[{"pageSize": "2MB", "limit": 0}],
        network={"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
        unified={"memory.high": "max"})
    assert validate_config(c) == []


# --- (2) broken configs: ours rejects at the right path, the official schema agrees ---------

DELETE = object()


def broken(edit: list[Any], value: Any) -> dict[str, Any]:
    """The default config with the field at `edit` (keys and indices) set to value or deleted."""
    c = copy.deepcopy(default_spec())
    target = c
    for k in edit[:-1]:
        target = target[k]
    if value is DELETE:
        del target[edit[-1]]
    else:
        target[edit[-1]] = value
    return c


# (field to break, bad value, JSON path our error must name, does the official schema check it)
CASES = [
    (["process", "args"], "sh", "process.args", True),
    # Official schema has no minItems on args; the spec text requires one entry on POSIX.
    (["process", "args"], [], "process.args", False),
    (["process", "args", 0], 7, "process.args[0]", True),
    # Since runtime-spec 1.1 a relative destination is relative to "/": only an empty one is
    # refused (the official schema takes any string).
    (["mounts", 0, "destination"], "", "mounts[0].destination", False),
    (["mounts", 1, "destination"], DELETE, "mounts[1].destination", True),
    (["linux", "namespaces", 0, "type"], "net", "linux.namespaces[0].type", True),
    # Official schema cannot say "each type once" (it has no maxContains in draft-04).
    (["linux", "namespaces", 1], {"type": "pid"}, "linux.namespaces", False),
    (["process", "user", "uid"], -1, "process.user.uid", True),
    (["process", "user", "additionalGids"], [5, -5], "process.user.additionalGids[1]", True),
    (["process", "rlimits", 0, "type"], "NOFILE", "process.rlimits[0].type", True),
    (["process", "rlimits", 0, "soft"], -1, "process.rlimits[0].soft", True),
    (["process", "rlimits", 0, "hard"], DELETE, "process.rlimits[0].hard", True),
    (["process", "capabilities", "bounding"], "CAP_KILL", "process.capabilities.bounding", True),
    # Official schema: oomScoreAdj is any integer; the kernel's range is -1000..1000.
    (["process", "oomScoreAdj"], 5000, "process.oomScoreAdj", False),
    # Official schema: cwd is any string; the spec text says it MUST be absolute.
    (["process", "cwd"], "tmp", "process.cwd", False),
    # Official schema: env items are any string; environ(7) entries are NAME=value.
    (["process", "env", 1], "TERM", "process.env[1]", False),
    (["hooks"], {"prestart": [{"path": 42}]}, "hooks.prestart[0].path", True),
    # Official schema: a hook path is any string; the spec text says it MUST be absolute.
    (["hooks"], {"poststop": [{"path": "hook.sh"}]}, "hooks.poststop[0].path", False),
    (["hooks"], {"createRuntime": [{"path": "/x", "timeout": 0}]},
     "hooks.createRuntime[0].timeout", True),
    (["linux", "devices"], [{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}],
     "linux.devices[0].type", True),
    # Official schema does not require major/minor for c, b and u devices; the spec text does.
    (["linux", "devices"], [{"type": "c", "path": "/dev/x"}], "linux.devices[0].major", False),
    (["linux", "uidMappings"], [{"containerID": 0, "hostID": 1000}],
     "linux.uidMappings[0].size", True),
    (["linux", "seccomp"], {"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction",
     True),
    (["linux", "rootfsPropagation"], "sideways", "linux.rootfsPropagation", True),
    (["linux", "sysctl"], {"net.ipv4.ip_forward": 1}, 'linux.sysctl["net.ipv4.ip_forward"]',
     True),
    (["linux", "resources", "memory"], {"limit": "1g"}, "linux.resources.memory.limit", True),
    (["linux", "resources", "hugepageLimits"], [{"pageSize": "2M", "limit": 1}],
     "linux.resources.hugepageLimits[0].pageSize", True),
    (["linux", "personality"], {"domain": "LINUX64"}, "linux.personality.domain", True),
    (["annotations"], {"org.example": 1}, 'annotations["org.example"]', True),
    (["root", "path"], DELETE, "root.path", True),
    (["ociVersion"], DELETE, "ociVersion", True),
]


@pytest.mark.parametrize("edit,value,path,official", CASES,
                         ids=[f"{c[2]}={'<deleted>' if c[1] is DELETE else c[1]!r}"[:60]
                              for c in CASES])
def test_broken_config_is_rejected(edit, value, path: str, official: bool) -> None:
    config = broken(edit, value)
    problems = validate_config(config)
    assert any(p.startswith(f"config.json: {path}: ") for p in problems), problems
    if not (OFFICIAL / "config-schema.json").is_file():
        return
    ours = _parts(path)
    theirs = official_paths(config)
    # Official errors sit at the field, or at its parent (required, anyOf wrappers).
    agrees = any(t == ours[:len(t)] and len(t) >= len(ours) - 1 for t in theirs)
    if official:
        assert agrees, (ours, theirs)
    else:
        # Keeps the comments above honest: flip the flag if the official schema learns this.
        assert theirs == [], f"the official schema now checks {path}: {theirs}"


def _parts(path: str) -> list[Any]:
    """Parse our spelling of a JSON path back into jsonschema's list of keys and indices."""
    out: list[Any] = []
    for name, index, quoted in re.findall(r'([A-Za-z_]\w*)|\[(\d+)\]|\[("[^"]*")\]', path):
        out.append(name or (int(index) if index else json.loads(quoted)))
    assert json_path(out) == path
    return out


def test_json_path_spelling() -> None:
    assert json_path(["process", "args", 0]) == "process.args[0]"
    assert json_path(["linux", "sysctl", "kernel.shm max"]) == 'linux.sysctl["kernel.shm max"]'
    assert json_path([]) == ""


def test_unreadable_bundle_is_one_problem(tmp_path: Path) -> None:
    assert validate_bundle(str(tmp_path)) == [f"config.json: not found in bundle {tmp_path}"]
    (tmp_path / "config.json").write_text("{not json")
    [line] = validate_bundle(str(tmp_path))
    assert line.startswith("config.json: invalid JSON: ")
    (tmp_path / "config.json").write_text("[]")
    assert validate_bundle(str(tmp_path)) == ["config.json: (top level): must be an object, "
                                              "not an array"]


# --- (3) the CLI ----------------------------------------------------------------------------

def _write(bundle: Path, config: dict[str, Any]) -> None:
    (bundle / "config.json").write_text(json.dumps(config))


def test_cli_valid_bundle(tmp_path: Path) -> None:
    _write(tmp_path, default_spec())
    p = subprocess.run([PYRUNC, "validate", "--bundle", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "valid" in p.stdout


def test_cli_invalid_bundle(tmp_path: Path) -> None:
    _write(tmp_path, broken(["process", "rlimits", 0, "type"], "RLIMIT_BOGUS"))
    p = subprocess.run([PYRUNC, "validate", "--bundle", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert "config.json: process.rlimits[0].type: " in p.stdout
    assert not p.stdout.rstrip().endswith(": valid")


# --- (4) state --------------------------------------------------------------------------------

def test_pyrunc_state_is_valid(pyrunc, bundle) -> None:
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    state = pyrunc.state(cid)
    assert state["status"] == "created"
    assert validate_state(state) == []
    if (OFFICIAL / "state-schema.json").is_file():
        assert official_paths(state, "state-schema.json") == []


@needs_runc
def test_runc_state_is_valid(bundle, tmp_path: Path) -> None:
    """Our state schema also describes what runc itself prints (rootfs, created, owner)."""
    runc = Runtime(RUNC, str(tmp_path / "runc-root"))
    cid = runc.new_id()
    try:
        runc("create", "--bundle", bundle.path, cid, check=True)
        assert validate_state(runc.state(cid)) == []
    finally:
        left = runc.cleanup()
        shutil.rmtree(runc.root, ignore_errors=True)
    assert left == []
    assert cgroup_leftovers(cid) == []


@pytest.mark.parametrize("field,value,path", [
    ("status", "zombie", "status"),
    ("pid", DELETE, "pid"),
    ("pid", 0, "pid"),
    ("bundle", "relative/dir", "bundle"),
    ("id", "", "id"),
    ("created", "yesterday", "created"),
    ("annotations", {"k": 1}, "annotations.k"),
])
def test_broken_state_is_rejected(field: str, value: Any, path: str) -> None:
    state = {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 42,
             "bundle": "/b", "rootfs": "/b/rootfs", "created": "2024-01-02T03:04:05.6789Z",
             "owner": ""}
    assert validate_state(state) == []
    if value is DELETE:
        del state[field]
    else:
        state[field] = value
    problems = validate_state(state)
    assert any(p.startswith(f"state: {path}: ") for p in problems), problems


def test_stopped_state_may_have_pid_zero() -> None:
    assert validate_state({"ociVersion": "1.0.2", "id": "c", "status": "stopped", "pid": 0,
                           "bundle": "/b"}) == []


# --- (5) the hot path stays cheap -------------------------------------------------------------

HEAVY = {"jsonschema", "jsonschema_specifications", "referencing", "requests", "urllib3",
         "pyroute2", "oras", "cryptography", "prctl", "rich", "isal", "zstandard", "imagetool"}


def imported_modules(code: str) -> set[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, timeout=60, cwd=str(SPECS.parent),
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.returncode == 0, p.stderr
    return {line.split("|")[2].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def test_lifecycle_imports_nothing_heavy() -> None:
    mods = imported_modules("import runtime.cli, runtime.create, runtime.container, runtime.init")
    assert {"runtime.cli", "runtime.create", "runtime.container", "runtime.init"} <= mods
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert heavy == [], f"the create/start/state/kill/delete path imports {heavy}"


def test_import_guard_sees_jsonschema() -> None:
    """The guard above must be able to fail: validating does pull jsonschema in."""
    mods = imported_modules("import runtime.validate as v; v.validate_state({})")
    assert "jsonschema" in mods
