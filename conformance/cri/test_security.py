"""Security context through the CRI, read from the container's init on the host
(/proc/<pid>/status) and tried from inside with ExecSync: privileged pods, a read-only
rootfs, run_as_user/run_as_group, capabilities add/drop, no_new_privs, seccomp
RuntimeDefault vs Unconfined. Each test runs with `pyrunc` and `runc`."""

from __future__ import annotations

import os

from conformance.cri.client import pb
from conformance.cri.cluster import HANDLERS
from conformance.engines.conftest import wait_for

SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']
# masked and read-only paths are mounts below /proc; a privileged container has none
PROC_SUBMOUNTS = "awk 'index($2, \"/proc/\") == 1 {n++} END {print n+0}' /proc/mounts"
CAP = {"CHOWN": 0, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_ADMIN": 21}


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _init_status(pods, cid: str) -> dict[str, str]:
    """The container's init once it runs the user's program (start returns before the
    runtime's init has exec'd it)."""
    pid = pods.pid(cid)
    return wait_for(lambda: (st := _status(pid))["Name"] == "sh" and st, 10,
                    f"pid {pid} to exec sh")


def _caps(st: dict[str, str], which: str = "CapEff") -> int:
    return int(st[which], 16)


def _sec(**kw) -> pb.LinuxContainerSecurityContext:
    return pb.LinuxContainerSecurityContext(**kw)


SAME = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
        "NoNewPrivs", "Seccomp", "Seccomp_filters")


def test_default_context(pods, handler, same_as_other_handler):
    pod = pods.run(handler, "plain", pid="CONTAINER")
    cid = pods.start(pod, "box", SLEEPER)
    st = _init_status(pods, cid)
    same_as_other_handler("status", {k: st.get(k) for k in SAME})
    caps = _caps(st)
    assert caps & (1 << CAP["CHOWN"]) and caps & (1 << CAP["NET_RAW"])
    assert not caps & (1 << CAP["SYS_ADMIN"]) and not caps & (1 << CAP["NET_ADMIN"])
    assert (st["Uid"].split()[0], st["NoNewPrivs"], st["Seccomp"]) == ("0", "0", "0")
    r = pods.cri.exec_sync(cid, ["sh", "-c", "touch /x && grep ' /sys ' /proc/mounts && "
                                             + PROC_SUBMOUNTS])
    assert r.exit_code == 0, r
    sysfs, masked = r.stdout.decode().splitlines()
    assert " ro," in sysfs and int(masked) > 0, r


def test_privileged(pods, handler):
    pod = pods.run(handler, "priv", privileged=True, pid="CONTAINER")
    cid = pods.start(pod, "box", SLEEPER, security=_sec(privileged=True))
    st = _init_status(pods, cid)
    # every capability the host gives us (this host may lack some, e.g. CAP_SYS_RESOURCE)
    assert _caps(st) == _caps(_status(os.getpid())), (st["CapEff"], handler)
    assert st["Seccomp"] == "0"
    # no masked paths (containerd keeps /sys read-only unless the pod is on the host network)
    r = pods.cri.exec_sync(cid, ["sh", "-c", f"{PROC_SUBMOUNTS}; ls /dev"])
    out = r.stdout.decode()
    assert out.splitlines()[0] == "0", r
    host_devs = {d for d in ("kmsg", "loop0", "tty0") if os.path.exists(f"/dev/{d}")}
    assert host_devs <= set(out.split()), out


def test_readonly_rootfs(pods, handler):
    pod = pods.run(handler, "ro", pid="CONTAINER")
    cid = pods.start(pod, "box", SLEEPER, security=_sec(readonly_rootfs=True))
    r = pods.cri.exec_sync(cid, ["sh", "-c", "touch /x; echo rc=$?; touch /tmp/y; echo rc=$?; "
                                             "touch /dev/shm/z; echo rc=$?"])
    out = r.stdout.decode()
    assert out.split() == ["rc=1", "rc=1", "rc=0"], r
    assert r.stderr.decode().count("Read-only file system") == 2, r


def test_user_caps_nnp_seccomp(pods, handler, same_as_other_handler):
    pod = pods.run(handler, "sec", pid="CONTAINER")
    sec = _sec(run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=1001),
               capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                          drop_capabilities=["CHOWN"]),
               no_new_privs=True,
               seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))
    cid = pods.start(pod, "box", SLEEPER, security=sec)
    st = _init_status(pods, cid)
    same_as_other_handler("status", {k: st.get(k) for k in SAME})
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1001"] * 4, st
    # a non-root user keeps no effective capabilities; the bounding set carries add/drop
    bnd = _caps(st, "CapBnd")
    assert bnd & (1 << CAP["NET_ADMIN"]) and not bnd & (1 << CAP["CHOWN"]), st["CapBnd"]
    assert _caps(st) == 0
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2" and st.get("Seccomp_filters", "1") != "0"
    r = pods.cri.exec_sync(cid, ["sh", "-c", "id -u; id -g; grep -E '^(NoNewPrivs|Seccomp):' "
                                             "/proc/self/status | tr -d '\\t'"])
    assert r.stdout.decode().split() == ["1000", "1001", "NoNewPrivs:1", "Seccomp:2"], r


def test_root_with_added_and_dropped_caps(pods, handler):
    pod = pods.run(handler, "caps", pid="CONTAINER")
    sec = _sec(capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                          drop_capabilities=["CHOWN"]),
               seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))
    cid = pods.start(pod, "box", SLEEPER, security=sec)
    st = _init_status(pods, cid)
    caps = _caps(st)
    assert caps & (1 << CAP["NET_ADMIN"]) and not caps & (1 << CAP["CHOWN"]), st["CapEff"]
    assert st["Seccomp"] == "0"
    r = pods.cri.exec_sync(cid, ["sh", "-c", "chown 1 /tmp; echo rc=$?; "
                                             "ip link set lo mtu 1500; echo rc=$?"])
    assert r.stdout.decode().split() == ["rc=1", "rc=0"], r


def _mount_table(pods, handler: str) -> list[tuple[str, str, str]]:
    """(mount point, type, per-mount options) of a default container's init, sorted: the
    v1 hierarchies under /sys/fs/cgroup come in another order from each runtime (cosmetic)."""
    pod = pods.run(handler, "mounts", pid="CONTAINER")
    cid = pods.start(pod, "box", SLEEPER)
    r = pods.cri.exec_sync(cid, ["cat", "/proc/1/mountinfo"])
    assert r.exit_code == 0, r
    table = []
    for line in r.stdout.decode().splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        table.append((f[4], right.split()[0], f[5]))
    assert table[0][:2] == ("/", "overlay"), table
    return sorted(table)


def test_mount_table_but_cgroup_tmpfs(pods):
    """Both runtimes set up the same mounts from the same bundle (all but the one below)."""
    tables = {h: [m for m in _mount_table(pods, h) if m[0] != "/sys/fs/cgroup"]
              for h in HANDLERS}
    assert tables["pyrunc"] == tables["runc"]


def test_mount_table_cgroup_tmpfs(pods):
    """Pinned: containerd asks for /sys/fs/cgroup as a `cgroup` mount with `ro`. On this cgroup
    v1 host pyrunc makes the tmpfs that holds the hierarchies read-only as asked; runc 1.1.5
    leaves that tmpfs rw (only the hierarchies inside are ro). Same mount point and type."""
    tables = {h: [m for m in _mount_table(pods, h) if m[0] == "/sys/fs/cgroup"]
              for h in HANDLERS}
    assert [m[:2] for m in tables["pyrunc"]] == [m[:2] for m in tables["runc"]], tables
    assert all(m[2].split(",")[0] == "ro" for m in tables["pyrunc"]), tables
    assert all(m[2].split(",")[0] == "rw" for m in tables["runc"]), \
        f"runc makes it ro now: the difference is gone, unpin: {tables}"
