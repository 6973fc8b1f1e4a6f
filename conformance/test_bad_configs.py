"""Bad configs: runc and pyrunc must agree on error-or-not, and a refused `create` leaves
nothing behind (state directory, cgroup, process). Error wording differs and is not compared.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import pytest

from conformance.pair import NAMES
from tests import hostcaps
from tests.rig import cgroup_leftovers

pytestmark = pytest.mark.peer

Config = dict[str, Any]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _above_nofile_ceiling() -> int:
    """An RLIMIT_NOFILE no process here may take: above the hard limit where the bounding set
    lacks CAP_SYS_RESOURCE, and above fs.nr_open (which binds even with it)."""
    import resource
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return (nr_open if hostcaps.has_cap("CAP_SYS_RESOURCE") else max(hard, 0)) + 1


def _ungrantable_cap() -> str | None:
    """A capability outside the runtime's bounding set (CAP_SYS_RESOURCE on this kind of
    machine), or None where root holds every probed one."""
    for name in hostcaps.CAP_NUMBERS:
        if not hostcaps.has_cap(name):
            return name
    return None


def _drop_ns(cfg: Config, t: str) -> None:
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != t]


def _userns(cfg: Config, uid: int = 0) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    cfg["process"]["user"] = {"uid": uid, "gid": uid}


def _host_sysctl(cfg: Config, ns: str | None, key: str) -> None:
    """A host-global sysctl set to the value it already has: harmless even if applied."""
    if ns:
        _drop_ns(cfg, ns)
    cfg["linux"]["sysctl"] = {key: _read("/proc/sys/" + key.replace(".", "/"))}


def _caps_add(cfg: Config, cap: str) -> None:
    for s in ("bounding", "effective", "permitted"):
        cfg["process"]["capabilities"][s].append(cap)


Mutate = Callable[[Config], Any]
BAD: list[tuple[str, Mutate]] = [
    # no process: pyrunc creates (the spec needs it only for start), runc 1.1.5 refuses;
    # pinned in test_spec_musts_diff.py
    ("no_args", lambda c: c["process"].pop("args")),
    ("empty_args", lambda c: c["process"].update(args=[])),
    ("unknown_namespace", lambda c: c["linux"]["namespaces"].append({"type": "foo"})),
    ("duplicate_namespace", lambda c: c["linux"]["namespaces"].append({"type": "pid"})),
    ("namespace_path_missing",
     lambda c: c["linux"]["namespaces"].append({"type": "cgroup", "path": "/nonexistent/ns"})),
    ("rootfs_missing", lambda c: c["root"].update(path="nonexistent")),
    ("relative_cwd", lambda c: c["process"].update(cwd="relative")),
    ("missing_executable", lambda c: c["process"].update(args=["/bin/nope"])),
    ("executable_not_in_path", lambda c: c["process"].update(args=["nope"])),
    ("not_executable", lambda c: c["process"].update(args=["/etc/passwd"])),
    ("directory_as_executable", lambda c: c["process"].update(args=["/bin"])),
    ("prestart_hook_missing",
     lambda c: c.update(hooks={"prestart": [{"path": "/nonexistent/hook"}]})),
    ("create_runtime_hook_fails",
     lambda c: c.update(hooks={"createRuntime": [{"path": "/bin/false"}]})),
    ("userns_without_mappings", lambda c: c["linux"]["namespaces"].append({"type": "user"})),
    ("user_unmapped_in_userns", lambda c: _userns(c, uid=1000)),
    ("hostname_without_uts", lambda c: _drop_ns(c, "uts")),
    ("rlimit_above_hard_limit", lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": _above_nofile_ceiling(),
                  "hard": _above_nofile_ceiling()}])),
    ("rlimit_unknown", lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOPE", "soft": 3, "hard": 3}])),
    # only where the bounding set lacks one (the pytest header lists what it lacks)
    *([("capability_not_grantable", lambda c: _caps_add(c, _ungrantable_cap() or ""))]
      if _ungrantable_cap() else []),
    ("bind_source_missing", lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": "/nonexistent", "options": ["bind"]})),
    ("unknown_fs_type", lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "bogusfs", "source": "x"})),
    ("bad_device_type", lambda c: c["linux"].update(
        devices=[{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}])),
    ("oom_score_out_of_range", lambda c: c["process"].update(oomScoreAdj=5000)),
    ("terminal_without_console_socket", lambda c: c["process"].update(terminal=True)),
    ("sysctl_host_global", lambda c: _host_sysctl(c, None, "vm.swappiness")),
    ("sysctl_net_in_host_netns", lambda c: _host_sysctl(c, "network", "net.ipv4.ip_forward")),
    ("sysctl_ipc_in_host_ipcns", lambda c: _host_sysctl(c, "ipc", "kernel.shmmni")),
    ("sysctl_kernel_hostname", lambda c: c["linux"].update(sysctl={"kernel.hostname": "x"})),
]

RAW: list[tuple[str, str | None]] = [
    ("invalid_json", "{not json"),
    ("json_array", "[]"),
    ("empty_object", "{}"),
    ("no_config_json", None),
]


def _create(pair, name: str, config: Config, mutate: Mutate | None = None,
            raw: str | None | bool = False) -> tuple[int, str]:
    """Run `create` under one runtime; check that a failure leaves nothing behind."""
    rt = pair.rt[name]

    def apply(cfg: Config, bundle: str) -> None:
        if mutate is not None:
            mutate(cfg)

    b = pair.bundle(name, config, apply)
    path = os.path.join(b.path, "config.json")
    if raw is None:
        os.unlink(path)
    elif raw is not False:
        with open(path, "w") as f:
            f.write(raw)
    cid = rt.new_id("bad")
    p = rt("create", "--bundle", b.path, cid)
    if p.returncode != 0:
        assert not os.path.exists(os.path.join(rt.root, cid)), f"{name} left its state dir"
        assert not cgroup_leftovers(cid), f"{name} left cgroups: {cgroup_leftovers(cid)}"
    return p.returncode, p.stderr.decode(errors="replace").strip()


@pytest.mark.parametrize("mutate", [m for _, m in BAD], ids=[n for n, _ in BAD])
def test_bad_config_fails_under_both(pair, config, mutate):
    got = {name: _create(pair, name, config, mutate) for name in NAMES}
    assert got["runc"][0] != 0, f"runc accepted it: the case is wrong, not pyrunc {got}"
    assert got["pyrunc"][0] != 0, f"pyrunc accepted what runc refuses: {got['runc'][1]}"
    assert got["pyrunc"][1], "pyrunc failed without saying why"


@pytest.mark.parametrize("raw", [r for _, r in RAW], ids=[n for n, _ in RAW])
def test_unreadable_config_fails_under_both(pair, config, raw):
    got = {name: _create(pair, name, config, raw=raw) for name in NAMES}
    assert got["runc"][0] != 0 and got["pyrunc"][0] != 0, got


# runc 1.1.5 accepts these with at most a warning; the runtime-spec (1.0.2, which both claim)
# says MUST for each, and pyrunc refuses. Pinned here so a change on either side shows up.
SPEC_STRICTER: list[tuple[str, Mutate, str]] = [
    ("unknown_capability", lambda c: _caps_add(c, "CAP_NOPE"),
     "config.md (1.0.2): a capability that cannot be mapped MUST cause an error"),
    ("uid_mappings_without_userns", lambda c: c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
        gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
     "mappings without a user namespace would be silently ignored"),
]


@pytest.mark.parametrize("mutate,why", [(m, w) for _, m, w in SPEC_STRICTER],
                         ids=[n for n, _, _ in SPEC_STRICTER])
def test_runc_lenient_pyrunc_strict(pair, config, mutate, why):
    got = {name: _create(pair, name, config, mutate) for name in NAMES}
    assert got["runc"][0] == 0, f"runc now refuses this too ({got['runc'][1]}): move the case " \
                                "to BAD"
    assert got["pyrunc"][0] != 0, f"pyrunc accepts it now: {why}"


def test_relative_mount_destination_is_relative_to_root(pair, config):
    """runtime-spec 1.1+ (Linux): a relative mounts[].destination is relative to "/". Both
    mount it there and warn; pyrunc's warning names the destination."""
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sh", "-c", "grep -c ' /rel/dir ' /proc/self/mountinfo"]
    cfg["mounts"].append({"destination": "rel/dir", "type": "tmpfs", "source": "tmpfs"})
    got = pair.run_both(cfg)
    for o in got.values():
        assert o.rc == 0 and o.stdout.strip() == "1", o
    assert "'rel/dir' is not absolute" in got["pyrunc"].stderr, got["pyrunc"].stderr
