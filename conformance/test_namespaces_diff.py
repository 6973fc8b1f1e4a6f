"""Namespaces joined by path or inherited, runc and pyrunc side by side.

`exec` must put the new process into every namespace of the container's init, however the
container got it (its own, joined by path, inherited); a mount namespace joined by path is
where the root is built; a config with no namespace at all runs in the runtime's own. Where
runc 1.1.5 differs (no time namespaces, refusals without a mount namespace) its behaviour is
pinned next to pyrunc's.

Containers that share the runtime's mount namespace never leave a mount in the host: runc's
(which mounts /proc, /dev, ... there) run inside a private `unshare --mount` sandbox; pyrunc's
run in the host's namespaces and the test checks that no mount of its bundle appears.
"""

from __future__ import annotations

import copy
import os
import subprocess
import tempfile
from typing import Any

import pytest

from conformance.nsholders import KINDS, NS_NAMES, Holders, kernel_namespaces, unshare_lacks
from conformance.pair import NAMES

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]

Config = dict[str, Any]
# What the exec'd process reports: its namespace links, and whether /proc/self is its own.
EXEC_PROBE = ("for n in " + " ".join(NS_NAMES) + "; do echo \"$n $(readlink /proc/self/ns/$n)\";"
              " done; head -1 /proc/self/status >/dev/null && echo status ok")


@pytest.fixture
def holders():
    h = Holders()
    try:
        yield h
    finally:
        h.cleanup()


def _sleeper(config: Config) -> Config:
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "120"]
    return cfg


def _join(cfg: Config, nstype: str, path: str) -> Config:
    nss = [n for n in cfg["linux"]["namespaces"] if n["type"] != nstype]
    cfg["linux"]["namespaces"] = nss + [{"type": nstype, "path": path}]
    if nstype == "uts":
        cfg.pop("hostname", None)  # not the holder's to change
    if nstype == "user":
        # runc 1.1.5 wants mappings even for a joined user namespace: the holder's own
        maps = [{"containerID": 0, "hostID": 0, "size": 65536}]
        cfg["linux"]["uidMappings"] = copy.deepcopy(maps)
        cfg["linux"]["gidMappings"] = copy.deepcopy(maps)
    return cfg


def _start(pair, name: str, cfg: Config) -> tuple[str, int, str]:
    """create + start; (id, init pid, stderr) with pid 0 when the runtime refused."""
    rt = pair.rt[name]
    b = pair.bundle(name, cfg)
    cid = rt.new_id("ns")
    p = rt("create", "--bundle", b.path, cid)
    if p.returncode != 0:
        return cid, 0, p.stderr.decode(errors="replace")
    rt("start", cid, check=True)
    return cid, rt.state(cid)["pid"], ""


def _exec_view(pair, name: str, cid: str, pid: int) -> dict[str, Any]:
    """exec the probe; its namespaces compared with the init's as the host sees them."""
    p = pair.rt[name]("exec", cid, "sh", "-c", EXEC_PROBE, timeout=30)
    out = p.stdout.decode(errors="replace").splitlines()
    seen = dict(line.split(" ", 1) for line in out if " " in line and line != "status ok")
    init = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in kernel_namespaces()}
    return {"rc": p.returncode, "stderr": p.stderr.decode(errors="replace"),
            "status_ok": "status ok" in out,
            "differ": {n: (seen.get(n), init[n]) for n in init if seen.get(n) != init[n]}}


@pytest.mark.parametrize("nstype", list(KINDS))
def test_exec_into_container_that_joined_by_path(pair, config, holders, nstype):
    """Each runtime starts a container that joins a namespace held by `unshare`, then execs
    into it: the exec'd process must be in all the init's namespaces, /proc/self its own."""
    why = unshare_lacks(nstype)
    if why:
        pytest.skip(why)
    seen = {}
    for name in NAMES:
        h = holders.new(nstype)  # one each: a joined mount namespace gets pivoted
        cid, pid, err = _start(pair, name, _join(_sleeper(config), nstype, h.path))
        if not pid:
            seen[name] = {"created": False, "stderr": err}
            continue
        fname = KINDS[nstype][0]
        view = _exec_view(pair, name, cid, pid)
        view["joined"] = os.readlink(f"/proc/{pid}/ns/{fname}") == h.link
        seen[name] = {"created": True, **view}
        pair.rt[name]("delete", "--force", cid, check=True)
    py = seen["pyrunc"]
    assert py.get("created"), py
    assert (py["rc"], py["differ"], py["status_ok"], py["joined"]) == (0, {}, True, True), py
    if nstype == "time":
        # runc 1.1.5 predates time namespaces: it refuses the config.
        assert not seen["runc"]["created"], seen["runc"]
        assert "time" in seen["runc"]["stderr"], seen["runc"]
        return
    rc = seen["runc"]
    assert rc.get("created") and (rc["rc"], rc["differ"], rc["status_ok"], rc["joined"]) == \
        (0, {}, True, True), rc


def test_exec_into_pid_namespace_of_another_container(pair, config):
    """The reported case: pb joins the pid namespace of a running container pa; `exec pb`
    must land in it (a /proc/self of its own) as runc's does."""
    seen = {}
    for name in NAMES:
        _pa, pa_pid, err = _start(pair, name, _sleeper(config))
        assert pa_pid, err
        path = f"/proc/{pa_pid}/ns/pid"
        pb, pb_pid, err = _start(pair, name, _join(_sleeper(config), "pid", path))
        assert pb_pid, err
        view = _exec_view(pair, name, pb, pb_pid)
        seen[name] = (view["rc"], view["differ"], view["status_ok"],
                      os.readlink(f"/proc/{pb_pid}/ns/pid") == os.readlink(path))
        assert seen[name] == (0, {}, True, True), (name, view)
    assert seen["runc"] == seen["pyrunc"]


def test_join_mount_namespace_of_another_container(pair, config):
    """A pivoted container's mount namespace does not show the rootfs of the joiner, so the
    root can't be built there: runc's init fails in its rootfs setup, pyrunc refuses with the
    reason. Neither leaves a container behind (the pair fixture checks)."""
    for name in NAMES:
        _pa, pa_pid, err = _start(pair, name, _sleeper(config))
        assert pa_pid, err
        cid, pid, err = _start(pair, name, _join(_sleeper(config), "mount",
                                                 f"/proc/{pa_pid}/ns/mnt"))
        assert not pid, f"{name} ran it"
        if name == "pyrunc":
            assert "linux.namespaces" in err and "rootfs" in err and "Traceback" not in err, err
        assert pair.rt[name]("state", cid).returncode != 0


def _no_namespaces(config: Config, script: str) -> Config:
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sh", "-c", script]
    cfg["linux"]["namespaces"] = []
    cfg.pop("hostname", None)  # both refuse a hostname without a uts namespace
    return cfg


# The container's namespaces and root as it sees them; whether / and /tmp are writable (by
# writing: busybox's test -w says yes to root) and the size of /etc/group (masked: 0).
INSIDE = (EXEC_PROBE + "; echo \"root $(ls / | tr '\\n' ' ')\"; for d in / /tmp/; do"
          " touch ${d}.w 2>/dev/null && rm ${d}.w && echo \"w$d yes\" || echo \"w$d no\";"
          " done; echo \"group $(wc -c < /etc/group)\"")
CALLER = ("for n in " + " ".join(NS_NAMES) + "; do"
          " echo \"caller $n $(readlink /proc/$$/ns/$n)\"; done")
GROUP_SIZE = len("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")  # tests/rig.py's


def _masks(cfg: Config) -> Config:
    """maskedPaths and readonlyPaths the probe can see: /etc/group masked, /tmp read-only."""
    cfg["linux"]["maskedPaths"] = cfg["linux"].get("maskedPaths", []) + ["/etc/group"]
    cfg["linux"]["readonlyPaths"] = cfg["linux"].get("readonlyPaths", []) + ["/tmp"]
    return cfg


def _run_sandboxed(pair, name: str, cfg: Config) -> tuple[int, dict[str, str], dict[str, str]]:
    """`run` from a shell in a private mount namespace (the runtime's, hence the container's):
    (rc, what the container printed, the caller's namespace links)."""
    rt = pair.rt[name]
    b = pair.bundle(name, cfg)
    cid = rt.new_id("nons")
    cmd = f"{CALLER}; exec {rt.binary} --root {rt.root} run --bundle {b.path} {cid}"
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    inside, caller = {}, {}
    for line in p.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "caller":
            n, _, link = value.partition(" ")
            caller[n] = link
        else:
            inside[key] = value
    return p.returncode, inside, caller | {"stderr": p.stderr}


def _host_mounts_of(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


def test_no_namespaces_runs_in_the_runtimes(pair, config):
    """No namespace listed: every one is inherited from the runtime, the mount namespace too.
    runc mounts /proc, /dev, ... in that namespace (hence its sandbox here) and chroots;
    pyrunc builds the root in a scratch namespace and keeps it detached, so the host's mount
    table never changes. Both must run, in the caller's namespaces, on the bundle's rootfs."""
    cfg = _no_namespaces(config, INSIDE)
    cfg["linux"]["maskedPaths"] = []  # runc refuses these without a mount namespace
    cfg["linux"]["readonlyPaths"] = []
    cfg["root"]["readonly"] = False  # runc ignores it without one (pinned below)
    results = {}
    for name in NAMES:
        rc, inside, caller = _run_sandboxed(pair, name, cfg)
        assert rc == 0, (name, caller["stderr"])
        for n in kernel_namespaces():
            assert inside.get(n) == caller[n], (name, n, inside, caller)
        results[name] = {k: inside.get(k) for k in ("status", "root", "w/", "w/tmp/", "group")}
    assert results["runc"] == results["pyrunc"]
    assert results["pyrunc"]["w/"] == "yes" and results["pyrunc"]["group"] == str(GROUP_SIZE)
    assert results["pyrunc"]["root"].split() == sorted(os.listdir(pair.template))


def test_no_namespaces_pyrunc_in_host_namespaces_leaves_no_mount(pair, config):
    """pyrunc straight in the host's namespaces (no sandbox): the container's namespaces are
    the caller's, its root the bundle's rootfs, exec lands there too, and not one mount of
    the bundle shows in the host's mount table, while it runs or after."""
    rt = pair.rt["pyrunc"]
    cfg = _masks(_no_namespaces(config, "sleep 120"))
    b = pair.bundle("pyrunc", cfg)
    cid = rt.new_id("nons")
    rt("run", "-d", "--bundle", b.path, cid, check=True, stdin=subprocess.DEVNULL)
    pid = rt.state(cid)["pid"]
    assert not _host_mounts_of(b.path)
    for n in kernel_namespaces():
        assert os.readlink(f"/proc/{pid}/ns/{n}") == os.readlink(f"/proc/self/ns/{n}"), n
    p = rt("exec", cid, "sh", "-c", INSIDE, timeout=30)
    assert p.returncode == 0, p.stderr
    out = dict(line.split(" ", 1) for line in p.stdout.decode().splitlines() if " " in line)
    assert out["root"].split() == sorted(os.listdir(b.rootfs))
    assert out["status"] == "ok"
    for n in kernel_namespaces():
        assert out[n] == os.readlink(f"/proc/self/ns/{n}"), n
    # root.readonly (the default config's), maskedPaths, readonlyPaths: as in any container
    assert (out["w/"], out["w/tmp/"], out["group"]) == ("no", "no", "0"), out
    rt("delete", "--force", cid, check=True)
    assert not _host_mounts_of(b.path)


def test_no_namespaces_differences_pinned(pair, config):
    """Where runc 1.1.5 does less than the spec asks without a mount namespace: it refuses
    maskedPaths/readonlyPaths and ignores root.readonly, and its exec fails (no namespace
    path to join). pyrunc applies both and execs."""
    masked = _masks(_no_namespaces(config, INSIDE))
    rc, _inside, caller = _run_sandboxed(pair, "runc", masked)
    assert rc != 0 and "without a private MNT namespace" in caller["stderr"], caller["stderr"]
    rc, inside, caller = _run_sandboxed(pair, "pyrunc", masked)
    assert rc == 0, caller["stderr"]
    assert (inside["w/"], inside["w/tmp/"], inside["group"]) == ("no", "no", "0"), inside
    plain = copy.deepcopy(masked)
    plain["linux"]["maskedPaths"] = []
    plain["linux"]["readonlyPaths"] = []
    rc, inside, caller = _run_sandboxed(pair, "runc", plain)
    assert rc == 0 and inside["w/"] == "yes", (inside, caller["stderr"])  # ro ignored
    # runc's exec into such a container (kept in a sandbox for its mounts) fails
    rt = pair.rt["runc"]
    plain["process"]["args"] = ["sleep", "120"]
    b = pair.bundle("runc", plain)
    cid = rt.new_id("nons")
    with tempfile.TemporaryFile() as out:  # never a pipe: the container inherits it
        subprocess.run(["unshare", "--mount", "--propagation", "private", rt.binary, "--root",
                        rt.root, "run", "-d", "--bundle", b.path, cid],
                       stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=True)
    assert rt("exec", cid, "true", timeout=30).returncode != 0
    rt("delete", "--force", cid, check=True)
