"""Same bundle, runc and pyrunc: what the container observes from inside must agree.

Each case is a change to runc's default config and the probes that show its effect. Both
runtimes run the probe script; the normalised observations (observe.py) must be equal, and a
mismatch fails with a unified diff, runc on the left.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conformance import observe

pytestmark = pytest.mark.peer

Config = dict[str, Any]
CAP_DEFAULT = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def _ns(cfg: Config, drop: str = "", add: dict[str, str] | None = None) -> None:
    nss = [n for n in cfg["linux"]["namespaces"] if n["type"] != drop]
    if add:
        nss.append(add)
    cfg["linux"]["namespaces"] = nss


def _caps(cfg: Config, **sets: list[str]) -> None:
    cfg["process"]["capabilities"] = sets


def default(cfg: Config, bundle: str) -> None:
    pass


def cwd_missing(cfg: Config, bundle: str) -> None:
    cfg["process"]["cwd"] = "/not/there/yet"


def cwd_in_tmpfs(cfg: Config, bundle: str) -> None:
    """The cwd lies inside a mount, so it can only be made once the mounts are in place."""
    cfg["process"]["cwd"] = "/scratch/work"
    cfg["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"})


def env_extra(cfg: Config, bundle: str) -> None:
    cfg["process"]["env"] += ["FOO=bar", "EMPTY=", "WITH_EQ=a=b=c", "SPACES=a b  c",
                              "HOME=/elsewhere", "DUP=first", "DUP=second"]


def user_1000(cfg: Config, bundle: str) -> None:
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 1000, 65534]}


def user_1000_no_groups(cfg: Config, bundle: str) -> None:
    cfg["process"]["user"] = {"uid": 1000, "gid": 100}


def umask_077(cfg: Config, bundle: str) -> None:
    cfg["process"]["user"]["umask"] = 0o77


def rlimits(cfg: Config, bundle: str) -> None:
    cfg["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_NPROC", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 16777216},
        {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000},
    ]


def no_rlimits(cfg: Config, bundle: str) -> None:
    del cfg["process"]["rlimits"]


def caps_reduced(cfg: Config, bundle: str) -> None:
    _caps(cfg, bounding=["CAP_CHOWN", "CAP_KILL"], effective=["CAP_CHOWN"],
          permitted=["CAP_CHOWN"], inheritable=[], ambient=[])


def caps_extended(cfg: Config, bundle: str) -> None:
    more = CAP_DEFAULT + ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_MKNOD",
                          "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE"]
    _caps(cfg, bounding=more, effective=more, permitted=more, inheritable=more, ambient=more)


def caps_none(cfg: Config, bundle: str) -> None:
    del cfg["process"]["capabilities"]


def caps_user_ambient(cfg: Config, bundle: str) -> None:
    """A non-root user keeps only what is ambient (and so also inheritable and permitted)."""
    user_1000(cfg, bundle)
    _caps(cfg, bounding=CAP_DEFAULT + ["CAP_CHOWN", "CAP_NET_RAW"],
          effective=CAP_DEFAULT + ["CAP_CHOWN"], permitted=CAP_DEFAULT + ["CAP_CHOWN"],
          inheritable=["CAP_KILL", "CAP_CHOWN"], ambient=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"])


def new_privs_allowed(cfg: Config, bundle: str) -> None:
    cfg["process"]["noNewPrivileges"] = False


def hostname_domainname(cfg: Config, bundle: str) -> None:
    cfg["hostname"] = "conf-host"
    cfg["domainname"] = "conf.example"


def sysctl(cfg: Config, bundle: str) -> None:
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789",
                              "net.ipv4.ping_group_range": "0 2147483647"}


def sysctl_slash_key(cfg: Config, bundle: str) -> None:
    cfg["linux"]["sysctl"] = {"net/ipv4/ip_forward": "1"}


def bind_mounts(cfg: Config, bundle: str) -> None:
    """ro and rw, file and dir, source relative to the bundle and absolute."""
    for name in ("rwdir", "rodir"):
        os.makedirs(os.path.join(bundle, name))
        with open(os.path.join(bundle, name, "inside"), "w") as f:
            f.write(f"{name}\n")
    for name in ("rwfile", "rofile"):
        with open(os.path.join(bundle, name), "w") as f:
            f.write(f"{name}\n")
    cfg["mounts"] += [
        {"destination": "/mnt/rwdir", "type": "bind", "source": "rwdir",
         "options": ["rbind", "rw"]},
        {"destination": "/mnt/rodir", "type": "none", "source": os.path.join(bundle, "rodir"),
         "options": ["bind", "ro", "nosuid", "nodev"]},
        {"destination": "/etc/rwfile", "type": "bind", "source": "rwfile", "options": ["bind"]},
        {"destination": "/deep/new/rofile", "type": "bind",
         "source": os.path.join(bundle, "rofile"), "options": ["bind", "ro", "noexec"]},
    ]


BIND_PROBES = {
    "binds": "cat /mnt/rwdir/inside /mnt/rodir/inside /etc/rwfile /deep/new/rofile; "
             "stat -c '%n %F' /mnt/rwdir /mnt/rodir /etc/rwfile /deep/new/rofile",
    "write_rwdir": "echo new > /mnt/rwdir/new && cat /mnt/rwdir/new",
    "write_rodir": "echo new > /mnt/rodir/new",
    "write_rwfile": "echo appended >> /etc/rwfile && cat /etc/rwfile",
    "write_rofile": "echo appended >> /deep/new/rofile",
}


def tmpfs_options(cfg: Config, bundle: str) -> None:
    cfg["mounts"] += [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1770", "size=1m", "uid=1000",
                     "gid=1000", "nr_inodes=100"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "scratch2",
         "options": ["ro", "noatime", "mode=755"]},
    ]


TMPFS_PROBES = {
    "scratch": "stat -c '%n %a %u %g' /scratch /tmp; echo x > /scratch/f && stat -c %s "
               "/scratch/f",
    "tmp_ro": "touch /tmp/f",
}


def userns(cfg: Config, bundle: str) -> None:
    """Container root is host 100000; the rootfs stays root-owned and read-only."""
    _ns(cfg, add={"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns_user(cfg: Config, bundle: str) -> None:
    userns(cfg, bundle)
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1000]}


def userns_chowned(cfg: Config, bundle: str) -> None:
    """A writable rootfs owned by the mapped root: container root may write to /."""
    userns(cfg, bundle)
    cfg["root"]["readonly"] = False
    chown_tree(os.path.join(bundle, "rootfs"), 100000, 100000)


def chown_tree(top: str, uid: int, gid: int) -> None:
    """chown -R, first giving hard-linked files (shared with the template) their own copy."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                shutil.copy2(path, path + ".own")
                os.replace(path + ".own", path)
            os.lchown(path, uid, gid)
        for name in dirnames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
    os.lchown(top, uid, gid)


USERNS_PROBES = {"owners": "stat -c '%n %u %g' / /bin/busybox /proc /dev /dev/null /tmp"}


def devices(cfg: Config, bundle: str) -> None:
    cfg["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
         "uid": 1000, "gid": 1000},
        {"path": "/dev/sub/dir/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o640,
         "uid": 0, "gid": 6},
        {"path": "/dev/myfifo", "type": "p"},
    ]


DEV_PROBES = {"devs": "stat -c '%n|%F|%a|%u|%g|%t|%T' /dev/fuse /dev/sub /dev/sub/dir "
                      "/dev/sub/dir/loop7 /dev/myfifo"}


def host_network(cfg: Config, bundle: str) -> None:
    _ns(cfg, drop="network")


def no_uts_ns(cfg: Config, bundle: str) -> None:
    """No uts namespace and no hostname: the host's name shows through."""
    _ns(cfg, drop="uts")
    del cfg["hostname"]


def writable_root(cfg: Config, bundle: str) -> None:
    cfg["root"]["readonly"] = False
    cfg["linux"]["maskedPaths"] += ["/etc/passwd", "/not/there"]
    cfg["linux"]["readonlyPaths"] += ["/etc", "/not/there/either"]


ROOT_PROBES = {"write_etc": "touch /etc/new", "write_tmp": "touch /tmp/new && ls /tmp",
               "passwd": "wc -c < /etc/passwd"}


def cgroup_ns(cfg: Config, bundle: str) -> None:
    _ns(cfg, add={"type": "cgroup"})


def propagation_private(cfg: Config, bundle: str) -> None:
    cfg["linux"]["rootfsPropagation"] = "private"


def no_mount_entries(cfg: Config, bundle: str) -> None:
    """Only /proc: no /dev tmpfs, so the rootfs's own (empty) /dev shows through."""
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] == "/proc"]
    del cfg["linux"]["maskedPaths"]
    del cfg["linux"]["readonlyPaths"]


D = observe.DEFAULT_PROBES
USERNS_DEV = {"userns_dev": "stat -c '%n|%F|%a|%u|%g|%t|%T' /dev /dev/null /dev/zero /dev/full "
                            "/dev/random /dev/urandom /dev/tty /dev/pts /dev/shm /dev/ptmx"}


def case(name: str, mutate: Callable[[Config, str], None], probes: tuple[str, ...],
         extra: dict[str, str] | None = None, marks: Any = ()) -> Any:
    return pytest.param(mutate, probes, extra or {}, id=name, marks=marks)


CASES = [
    case("default", default, D),
    case("cwd_missing", cwd_missing, ("cwd", "write_root"),
         {"made": "stat -c '%n %a %u %g' /not /not/there /not/there/yet"}),
    case("cwd_in_tmpfs", cwd_in_tmpfs, ("cwd",), {"made": "stat -c '%n %a' /scratch/work"}),
    case("env_extra", env_extra, ("env",), {"home": 'echo "$HOME"', "dup": 'echo "$DUP"'}),
    case("user_1000", user_1000, ("id", "status", "env"), {"home": 'echo "$HOME"'}),
    case("user_1000_no_groups", user_1000_no_groups, ("id", "status")),
    case("umask_077", umask_077, ("umask",), {"newfile": "touch /dev/shm/f && mkdir /dev/shm/d "
                                              "&& stat -c '%n %a' /dev/shm/f /dev/shm/d"}),
    case("rlimits", rlimits, ("nofile", "limits")),
    case("no_rlimits", no_rlimits, ("nofile", "limits")),
    case("caps_reduced", caps_reduced, ("status",), {"chown": "chown 1000 /dev/null; echo $?"}),
    case("caps_extended", caps_extended, ("status", "write_root"),
         {"mknod": "mknod /dev/probe c 1 3 && stat -c %t,%T /dev/probe"}),
    case("caps_none", caps_none, ("status",)),
    case("caps_user_ambient", caps_user_ambient, ("status", "id")),
    case("new_privs_allowed", new_privs_allowed, ("status",)),
    case("hostname", hostname_domainname, ("hostname",), {"uname": "uname -n"}),
    case("sysctl", sysctl, (), {"sysctl": "cat /proc/sys/net/ipv4/ip_forward "
                                "/proc/sys/kernel/shmmax /proc/sys/net/ipv4/ping_group_range"}),
    case("sysctl_slash_key", sysctl_slash_key, (),
         {"sysctl": "cat /proc/sys/net/ipv4/ip_forward"}),
    case("bind_mounts", bind_mounts, ("mountinfo",), BIND_PROBES),
    case("tmpfs_options", tmpfs_options, ("mountinfo",), TMPFS_PROBES),
    case("userns", userns, ("uid_map", "id", "status", "mountinfo", "write_root"),
         {**USERNS_PROBES, **USERNS_DEV}),
    case("userns_chowned", userns_chowned, ("id", "write_root"),
         {"owners": "stat -c '%n %u %g' / /bin/busybox /etc/passwd /tmp",
          "mkdir": "mkdir /newdir && stat -c '%n %u %g' /newdir"}),
    case("userns_user", userns_user, ("uid_map", "id", "status"), USERNS_PROBES),
    case("userns_mqueue_owner", userns, (), {"mqueue": "stat -c %u /dev/mqueue"}),
    case("devices", devices, ("dev",), DEV_PROBES),
    case("host_network", host_network, ("netdevs", "mountinfo"),
         {"lo_state": "cat /sys/class/net/lo/operstate"}),
    case("new_netns_lo", default, ("netdevs", "lo")),
    case("no_uts_ns", no_uts_ns, ("hostname",)),
    case("writable_root", writable_root, ("write_root", "mountinfo"), ROOT_PROBES),
    case("cgroup_ns", cgroup_ns, ("cgroup", "mountinfo")),
    case("propagation_private", propagation_private, ("mountinfo",)),
    case("no_mount_entries", no_mount_entries, ("mountinfo",), {"dev": "ls -A /dev"}),
]


@pytest.mark.parametrize("mutate,probes,extra", CASES)
def test_same_observations(pair, config, request, mutate, probes, extra):
    name = request.node.callspec.id
    ref, got, outs = pair.observe(config, probes, mutate, extra)
    assert ref["run_rc"] == 0, f"runc failed on {name}: {outs['runc'].stderr}"
    assert len(ref) == len(probes) + len(extra) + 1, f"runc printed: {outs['runc'].stdout}"
    assert_same(ref, got, outs, name)


def test_domainname(pair, config):
    """runc 1.1.5 ignores `domainname` (support came in a later runc); the spec asks for it,
    and pyrunc sets it. Everything else about the UTS namespace must agree."""
    ref, got, outs = pair.observe(config, ("hostname", "domainname"), hostname_domainname)
    assert got["domainname"]["out"] == ["conf.example"], outs["pyrunc"].stderr
    assert ref["domainname"]["out"] in (["(none)"], ["conf.example"])
    ref.pop("domainname")
    got.pop("domainname")
    assert_same(ref, got, outs, "domainname")


def test_host_side_of_rw_bind(pair, config):
    """What a container writes through an rw bind lands in the bundle, under both."""
    config["process"]["args"] = ["sh", "-c", "echo hi > /mnt/rwdir/out; echo more >> "
                                 "/etc/rwfile; echo no > /mnt/rodir/out"]
    outs = pair.run_both(config, bind_mounts)
    seen = {}
    for name, o in outs.items():
        b = o.bundle.path
        seen[name] = (o.rc, _read(os.path.join(b, "rwdir/out")), _read(os.path.join(b, "rwfile")),
                      os.path.exists(os.path.join(b, "rodir/out")))
    assert seen["runc"] == (1, "hi\n", "rwfile\nmore\n", False), seen
    assert seen["pyrunc"] == seen["runc"]


def assert_same(ref: dict[str, Any], got: dict[str, Any], outs: dict[str, Any],
                name: str) -> None:
    diff = observe.differences(ref, got)
    if diff:
        pytest.fail(f"{name}: pyrunc differs from runc\n"
                    f"runc exit {outs['runc'].rc}, pyrunc exit {outs['pyrunc'].rc}; "
                    f"pyrunc stderr: {outs['pyrunc'].stderr.strip()!r}\n{diff}", pytrace=False)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


@pytest.fixture
def netns():
    """A named network namespace made with iproute2, deleted at the end."""
    name = f"conf{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_join_netns_by_path(pair, config, netns):
    path = f"/var/run/netns/{netns}"
    want = f"net:[{os.stat(path).st_ino}]"

    def join(cfg: Config, bundle: str) -> None:
        _ns(cfg, drop="network", add={"type": "network", "path": path})

    ref, got, outs = pair.observe(config, ("netns", "netdevs"), join,
                                  {"lo_state": "cat /sys/class/net/lo/operstate"})
    assert ref["run_rc"] == 0, outs["runc"].stderr
    assert ref["netns"]["out"] == [want]
    assert_same(ref, got, outs, "join")


def test_join_uts_of_running_container(pair, config):
    """Both join the uts namespace of a runc container by /proc/PID/ns/uts."""
    sleeper = dict(config, hostname="shared-uts")
    sleeper["process"] = dict(config["process"], args=["sleep", "60"])
    cid, pid = pair.start_detached("runc", sleeper)
    path = f"/proc/{pid}/ns/uts"

    def join(cfg: Config, bundle: str) -> None:
        _ns(cfg, drop="uts", add={"type": "uts", "path": path})
        del cfg["hostname"]

    ref, got, outs = pair.observe(config, ("hostname", "utsns"), join)
    assert ref["run_rc"] == 0, outs["runc"].stderr
    assert ref["hostname"]["out"] == ["shared-uts"]
    assert ref["utsns"]["out"] == [os.readlink(path)]
    assert_same(ref, got, outs, "join")
    # the joined namespace is left as it was
    assert pair.rt["runc"].state(cid)["status"] == "running"
