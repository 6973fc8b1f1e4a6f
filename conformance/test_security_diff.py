"""The process's security settings, runc and pyrunc side by side: capabilities in all five
sets, noNewPrivileges, seccomp (Docker's default profile and custom ones with errnoRet and
argument conditions), extra maskedPaths/readonlyPaths, supplementary groups, and a user
namespace with a non-root user.

Each case runs one probe script under both runtimes (conformance/observe.py); the normalised
outputs, exit statuses included, must be equal. A refused config is compared as
error-or-not. Probes only touch the container's own namespaces and tmpfs: nothing here may
set the clock, write a device or change anything the host shares.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from conformance import observe
from conformance import seccomp_profiles as sp
from conformance.pair import NAMES

pytestmark = pytest.mark.peer

Config = dict[str, Any]
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
needs_profile = pytest.mark.skipif(not sp.have_docker_profile(),
                                   reason=f"{sp.DOCKER_PROFILE} missing (golang-github-"
                                          "containers-common)")


def _caps(cfg: Config, **sets: list[str]) -> None:
    cfg["process"]["capabilities"] = {k: list(v) for k, v in sets.items()}


def _user(cfg: Config, uid: int, gid: int, groups: list[int] | None = None) -> None:
    cfg["process"]["user"] = {"uid": uid, "gid": gid}
    if groups is not None:
        cfg["process"]["user"]["additionalGids"] = groups


def _writable(cfg: Config) -> None:
    cfg["root"]["readonly"] = False


# Behaviour of capabilities, on the container's own tmpfs (/dev/shm) and its own /dev.
CAP_PROBES = {
    "chown": "touch /dev/shm/f && chown 4321:4321 /dev/shm/f && stat -c '%u %g' /dev/shm/f",
    "mknod": "mknod /dev/shm/null c 1 3 && stat -c '%F %t,%T' /dev/shm/null",
    "kill_init": "kill -0 1 && echo signalled",
    "setuid": "su -s /bin/sh nobody -c 'id -u' </dev/null",
}


# -- capabilities ---------------------------------------------------------------------------

def caps_five_distinct_sets(cfg: Config, bundle: str) -> None:
    """Each set different: bounding > permitted > effective; inheritable and ambient apart."""
    _caps(cfg, bounding=DEFAULT_CAPS + ["CAP_CHOWN", "CAP_MKNOD", "CAP_SETUID", "CAP_NET_RAW"],
          permitted=DEFAULT_CAPS + ["CAP_CHOWN", "CAP_MKNOD", "CAP_SETUID"],
          effective=DEFAULT_CAPS + ["CAP_CHOWN"],
          inheritable=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
          ambient=["CAP_KILL", "CAP_CHOWN"])


def caps_ambient_for_non_root(cfg: Config, bundle: str) -> None:
    """uid 1000 keeps exactly the ambient set across execve."""
    _user(cfg, 1000, 1000)
    caps_five_distinct_sets(cfg, bundle)


def caps_inheritable_without_ambient_non_root(cfg: Config, bundle: str) -> None:
    """Inheritable alone gives a non-root process nothing across execve."""
    _user(cfg, 1000, 1000)
    all_ = DEFAULT_CAPS + ["CAP_CHOWN", "CAP_MKNOD"]
    _caps(cfg, bounding=all_, permitted=all_, effective=all_, inheritable=all_, ambient=[])


def caps_effective_for_non_root(cfg: Config, bundle: str) -> None:
    """Effective and permitted without ambient: the runtime sets them after the uid switch,
    and execve of a non-root process then clears them."""
    _user(cfg, 1000, 1000)
    all_ = DEFAULT_CAPS + ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"]
    _caps(cfg, bounding=all_, permitted=all_, effective=all_)


def caps_ambient_not_inheritable(cfg: Config, bundle: str) -> None:
    """An ambient capability missing from inheritable can't be raised."""
    _caps(cfg, bounding=DEFAULT_CAPS, permitted=DEFAULT_CAPS, effective=DEFAULT_CAPS,
          inheritable=["CAP_KILL"], ambient=["CAP_KILL", "CAP_NET_BIND_SERVICE"])


def caps_bounding_only(cfg: Config, bundle: str) -> None:
    _caps(cfg, bounding=DEFAULT_CAPS + ["CAP_SETUID", "CAP_SETGID"])


def caps_all_empty(cfg: Config, bundle: str) -> None:
    _caps(cfg, **{s: [] for s in SETS})


def caps_setuid_setgid(cfg: Config, bundle: str) -> None:
    """Enough to su to another user (busybox su as root needs no password)."""
    all_ = DEFAULT_CAPS + ["CAP_SETUID", "CAP_SETGID"]
    _caps(cfg, bounding=all_, permitted=all_, effective=all_)


# -- noNewPrivileges --------------------------------------------------------------------------

SUID_DIR = "opt/suid"


def suid_ping(cfg: Config, bundle: str) -> None:
    """A setuid-root copy of busybox (its own inode: the rootfs hard-links the template's) at
    /opt/suid, reached as `ping`; uid 1000 with CAP_NET_RAW in the bounding set only, so the
    ping needs the setuid bit to open its raw socket."""
    d = os.path.join(bundle, "rootfs", SUID_DIR)
    os.makedirs(d)
    shutil.copyfile(os.path.join(bundle, "rootfs", "bin", "busybox"), os.path.join(d, "busybox"))
    os.chmod(os.path.join(d, "busybox"), 0o4755)
    os.symlink("busybox", os.path.join(d, "ping"))
    _user(cfg, 1000, 1000)
    _caps(cfg, bounding=DEFAULT_CAPS + ["CAP_NET_RAW"], permitted=DEFAULT_CAPS,
          effective=DEFAULT_CAPS)


def nnp_true(cfg: Config, bundle: str) -> None:
    suid_ping(cfg, bundle)
    cfg["process"]["noNewPrivileges"] = True


def nnp_false(cfg: Config, bundle: str) -> None:
    suid_ping(cfg, bundle)
    cfg["process"]["noNewPrivileges"] = False


NNP_PROBES = {"suid_ping": f"/{SUID_DIR}/ping -c1 -W2 127.0.0.1 >/dev/null && echo pinged",
              "plain_ping": "ping -c1 -W2 127.0.0.1 >/dev/null && echo pinged",
              "stat": f"stat -c '%a %u' /{SUID_DIR}/busybox"}


# -- seccomp --------------------------------------------------------------------------------

# Syscalls the default profile or the caps refuse, and programs that must keep working.
# Everything here stays inside the container's own UTS, mount and user namespaces.
SECCOMP_PROBES = {
    "seccomp": "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status",
    "common": "ls / | wc -l; cat /etc/passwd | wc -l; echo hi | wc -c; sleep 0.01; id -u; "
              "date +%Y >/dev/null; echo ok",
    "sethostname": "hostname changed; hostname",
    "chroot": "chroot / true",
    "mount": "mount -t tmpfs none /tmp && echo mounted",
    "unshare_mnt": "unshare -m true",
    "unshare_user": "unshare -U true",
    "mkdir": "mkdir /dev/shm/d && echo made",
    "rmdir": "mkdir /dev/shm/e 2>/dev/null; rmdir /dev/shm/e",
    "chmod_suid": "touch /dev/shm/f && chmod 755 /dev/shm/f && chmod 4755 /dev/shm/f; "
                  "stat -c %a /dev/shm/f",
    "kill_usr1": "sh -c 'trap \"echo got\" USR1; kill -USR1 $$; echo rc=$?' 2>&1 | "
                 "sed 's/pid [0-9]*/pid N/'",
}


def _profile(cfg: Config, section: dict[str, Any]) -> None:
    cfg["linux"]["seccomp"] = section


def docker_default(cfg: Config, bundle: str) -> None:
    _profile(cfg, sp.docker_default(cfg["process"]["capabilities"]["bounding"]))


def docker_default_caps_beyond_profile(cfg: Config, bundle: str) -> None:
    """The profile made for the default caps while the process holds CAP_SYS_ADMIN and
    CAP_SYS_CHROOT: sethostname and chroot are refused by the filter (errnoRet 1), not by
    the capability checks; mount, which the profile allows, works."""
    _profile(cfg, sp.docker_default(DEFAULT_CAPS))
    more = DEFAULT_CAPS + ["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]
    _caps(cfg, bounding=more, effective=more, permitted=more)


def docker_default_admin(cfg: Config, bundle: str) -> None:
    """The profile made for caps that include CAP_SYS_ADMIN: its extra rules allow them."""
    more = DEFAULT_CAPS + ["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]
    _caps(cfg, bounding=more, effective=more, permitted=more)
    _profile(cfg, sp.docker_default(more))


def docker_default_no_nnp(cfg: Config, bundle: str) -> None:
    """noNewPrivileges false: the filter is loaded while the init still holds
    CAP_SYS_ADMIN, and NoNewPrivs stays 0."""
    docker_default(cfg, bundle)
    cfg["process"]["noNewPrivileges"] = False


def docker_default_non_root_no_nnp(cfg: Config, bundle: str) -> None:
    docker_default_no_nnp(cfg, bundle)
    _user(cfg, 1000, 1000, [1000])


def docker_default_without_mkdir(cfg: Config, bundle: str) -> None:
    """mkdir and mkdirat taken out of the allow list: they fall to the profile's default
    action, ERRNO with defaultErrnoRet 38 (ENOSYS)."""
    sec = sp.docker_default(cfg["process"]["capabilities"]["bounding"])
    _profile(cfg, sp.without(sp.without(sec, "mkdir"), "mkdirat"))


def custom_errno_and_args(cfg: Config, bundle: str) -> None:
    _profile(cfg, sp.custom_errno_args())


def custom_default_errno(cfg: Config, bundle: str) -> None:
    _profile(cfg, sp.custom_default_errno(sp.docker_default(DEFAULT_CAPS)))


def kill_action(cfg: Config, bundle: str) -> None:
    """SCMP_ACT_KILL on mkdir: the probe's subshell dies of SIGSYS (status 159)."""
    _profile(cfg, {"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]})


# -- masked and read-only paths -------------------------------------------------------------

def masked_readonly_extra(cfg: Config, bundle: str) -> None:
    """Files and directories in the rootfs, /proc and /sys; a tmpfs made read-only; and
    paths that don't exist (both runtimes skip them)."""
    _writable(cfg)
    cfg["linux"]["maskedPaths"] += ["/etc/group", "/home/user", "/proc/cpuinfo",
                                    "/sys/kernel/mm", "/not/there", "/proc/nope"]
    cfg["linux"]["readonlyPaths"] += ["/etc", "/dev/shm", "/proc/sys/kernel/hostname",
                                      "/sys/kernel", "/not/there/either"]
    os.makedirs(os.path.join(bundle, "rootfs", "home", "user", "sub"), exist_ok=True)
    with open(os.path.join(bundle, "rootfs", "home", "user", "secret"), "w") as f:
        f.write("secret\n")


MASK_PROBES = {
    "masked_file": "cat /etc/group | wc -c; stat -c '%F %t,%T' /etc/group",
    "masked_dir": "ls -A /home/user; stat -c '%F %a' /home/user",
    "masked_proc": "wc -c < /proc/cpuinfo",
    "masked_sys": "ls -A /sys/kernel/mm | wc -l",
    "write_masked_dir": "touch /home/user/new",
    "write_etc": "touch /etc/new",
    "write_shm": "touch /dev/shm/new",
    "write_hostname": "echo x > /proc/sys/kernel/hostname",
    "write_root": "touch /new && echo wrote",
}


# -- users and groups -----------------------------------------------------------------------

def groups_varied(cfg: Config, bundle: str) -> None:
    """A uid known to /etc/passwd, a primary gid that isn't its own, and supplementary gids
    that are unknown (4242), the primary itself, and 0, in no order."""
    _user(cfg, 1000, 100, [65534, 5, 100, 4242, 0])
    cfg["process"]["user"]["umask"] = 0o027


def groups_duplicated(cfg: Config, bundle: str) -> None:
    _user(cfg, 1000, 1000, [5, 5, 1000, 65534, 5])


def user_unknown_to_passwd(cfg: Config, bundle: str) -> None:
    """A uid the image's /etc/passwd doesn't list: HOME and the id output as runc gives."""
    _user(cfg, 4321, 4321, [4322])
    cfg["process"]["env"] = [e for e in cfg["process"]["env"] if not e.startswith("HOME=")]


GROUP_PROBES = {"home": 'echo "HOME=$HOME"',
                "newfile": "touch /dev/shm/f && mkdir /dev/shm/d && "
                           "stat -c '%n %a %u %g' /dev/shm/f /dev/shm/d",
                "group_access": "ls /root >/dev/null && echo listed"}


# -- user namespace ---------------------------------------------------------------------------

def userns_split_ranges(cfg: Config, bundle: str) -> None:
    """Two mapped ranges each for uids and gids; a non-root user with supplementary groups
    from both ranges."""
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000},
                                   {"containerID": 1000, "hostID": 300000, "size": 100}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000},
                                   {"containerID": 1000, "hostID": 300000, "size": 100}]
    _user(cfg, 1000, 1000, [5, 1001])


USERNS_PROBES = {"setgroups": "cat /proc/self/setgroups",
                 "newfile": "touch /dev/shm/f && stat -c '%u %g' /dev/shm/f",
                 "owners": "stat -c '%n %u %g' / /bin/busybox /proc /dev/null",
                 "setuid_back": "su -s /bin/sh root -c 'id -u' </dev/null"}


# -- the cases ---------------------------------------------------------------------------------

def case(name: str, mutate: Callable[[Config, str], None], probes: tuple[str, ...],
         extra: dict[str, str] | None = None, marks: Any = ()) -> Any:
    return pytest.param(mutate, probes, extra or {}, id=name, marks=marks)


ST = ("status", "id")
CASES = [
    case("caps_five_distinct_sets", caps_five_distinct_sets, ST, CAP_PROBES),
    case("caps_ambient_for_non_root", caps_ambient_for_non_root, ST, CAP_PROBES),
    case("caps_inheritable_without_ambient_non_root",
         caps_inheritable_without_ambient_non_root, ST, CAP_PROBES),
    case("caps_effective_for_non_root", caps_effective_for_non_root, ST, CAP_PROBES),
    case("caps_ambient_not_inheritable", caps_ambient_not_inheritable, ST, CAP_PROBES),
    case("caps_bounding_only", caps_bounding_only, ST, CAP_PROBES),
    case("caps_all_empty", caps_all_empty, ST, CAP_PROBES),
    case("caps_setuid_setgid", caps_setuid_setgid, ST, CAP_PROBES),
    case("nnp_true_suid", nnp_true, ST, NNP_PROBES),
    case("nnp_false_suid", nnp_false, ST, NNP_PROBES),
    case("seccomp_docker_default", docker_default, ("status",), SECCOMP_PROBES,
         needs_profile),
    case("seccomp_docker_caps_beyond_profile", docker_default_caps_beyond_profile,
         ("status",), SECCOMP_PROBES, needs_profile),
    case("seccomp_docker_admin", docker_default_admin, ("status",), SECCOMP_PROBES,
         needs_profile),
    case("seccomp_docker_no_nnp", docker_default_no_nnp, ("status",), SECCOMP_PROBES,
         needs_profile),
    case("seccomp_docker_non_root_no_nnp", docker_default_non_root_no_nnp, ST,
         SECCOMP_PROBES, needs_profile),
    case("seccomp_docker_without_mkdir", docker_default_without_mkdir, (), SECCOMP_PROBES,
         needs_profile),
    case("seccomp_custom_errno_args", custom_errno_and_args, (), SECCOMP_PROBES),
    case("seccomp_custom_default_errno", custom_default_errno, (), SECCOMP_PROBES,
         needs_profile),
    case("seccomp_kill_action", kill_action, (), {"mkdir": "mkdir /dev/shm/k; echo after"}),
    case("masked_readonly_extra", masked_readonly_extra, ("mountinfo",), MASK_PROBES),
    case("groups_varied", groups_varied, ST, GROUP_PROBES),
    case("groups_duplicated", groups_duplicated, ST),
    case("user_unknown_to_passwd", user_unknown_to_passwd, ST, GROUP_PROBES),
    case("userns_split_ranges", userns_split_ranges, ("uid_map", "id", "status"),
         USERNS_PROBES),
]


@pytest.mark.parametrize("mutate,probes,extra", CASES)
def test_security_seen_alike(pair, config, request, mutate, probes, extra):
    name = request.node.callspec.id
    ref, got, outs = pair.observe(config, probes, mutate, extra)
    assert ref["run_rc"] == 0, f"runc failed on {name}: {outs['runc'].stderr}"
    assert len(ref) == len(probes) + len(extra) + 1, f"runc printed: {outs['runc'].stdout}"
    diff = observe.differences(ref, got)
    if diff:
        pytest.fail(f"{name}: pyrunc differs from runc\npyrunc exit {outs['pyrunc'].rc}, "
                    f"stderr {outs['pyrunc'].stderr.strip()!r}\n{diff}", pytrace=False)


def test_probes_show_the_settings(pair, config):
    """The probes themselves, under runc: the filter refused with its errno, the setuid bit
    was honoured only without noNewPrivileges, masked paths were empty."""
    checks = [
        (docker_default_without_mkdir, SECCOMP_PROBES, "mkdir", "Function not implemented"),
        (docker_default_caps_beyond_profile, SECCOMP_PROBES, "sethostname",
         "Operation not permitted"),
        (custom_errno_and_args, SECCOMP_PROBES, "mkdir", "Permission denied"),
        (custom_errno_and_args, SECCOMP_PROBES, "chmod_suid", "Read-only file system"),
        (custom_errno_and_args, SECCOMP_PROBES, "kill_usr1", "Invalid argument"),
        (nnp_true, NNP_PROBES, "suid_ping", "permission denied"),
        (nnp_false, NNP_PROBES, "suid_ping", "pinged"),
        (masked_readonly_extra, MASK_PROBES, "masked_file", "0"),
    ]
    for mutate, probes, key, want in checks:
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sh", "-c", observe.script((), {key: probes[key]})]
        o = pair.run("runc", cfg, mutate)
        assert want in o.stdout, (mutate.__name__, key, o.stdout, o.stderr)


def test_userns_seen_from_the_host(pair, config):
    """The init's ids, groups and maps as the host sees them in /proc/<pid>."""
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "120"]
    seen = {}
    for name in NAMES:
        cid, pid = pair.start_detached(name, cfg, userns_split_ranges)
        with open(f"/proc/{pid}/status") as f:
            status = [ln.strip() for ln in f if ln.startswith(("Uid", "Gid", "Groups",
                                                              "CapEff", "NoNewPrivs"))]
        maps = {}
        for m in ("uid_map", "gid_map", "setgroups"):
            with open(f"/proc/{pid}/{m}") as f:
                maps[m] = f.read().split()
        seen[name] = {"status": status, **maps}
    assert "Uid:\t300000\t300000\t300000\t300000" in seen["runc"]["status"], seen["runc"]
    assert seen["pyrunc"] == seen["runc"]


# Configs both must refuse (the wording differs and is not compared).
REFUSED: list[tuple[str, Callable[[Config, str], None]]] = [
    ("caps_effective_not_permitted", lambda c, b: _caps(
        c, bounding=DEFAULT_CAPS + ["CAP_CHOWN"], permitted=DEFAULT_CAPS,
        effective=DEFAULT_CAPS + ["CAP_CHOWN"])),
    ("caps_inheritable_not_bounding", lambda c, b: _caps(
        c, bounding=DEFAULT_CAPS, permitted=DEFAULT_CAPS, effective=DEFAULT_CAPS,
        inheritable=DEFAULT_CAPS + ["CAP_SYS_ADMIN"])),
    ("seccomp_unknown_action", lambda c, b: _profile(c, {
        "defaultAction": "SCMP_ACT_NOPE", "syscalls": []})),
    ("seccomp_bad_arg_op", lambda c, b: _profile(c, {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_NOPE"}]}]})),
    ("seccomp_arg_index_too_big", lambda c, b: _profile(c, {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 10, "op": "SCMP_CMP_EQ"}]}]})),
    ("seccomp_unknown_arch", lambda c, b: _profile(c, {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"],
        "syscalls": []})),
    ("userns_group_unmapped", lambda c, b: (userns_split_ranges(c, b), _user(
        c, 1000, 1000, [5, 2000]))),
    ("userns_user_unmapped", lambda c, b: (userns_split_ranges(c, b), _user(c, 5000, 1000))),
]


@pytest.mark.parametrize("mutate", [m for _, m in REFUSED], ids=[n for n, _ in REFUSED])
def test_security_error_or_not(pair, config, mutate):
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["true"]
    got = {name: pair.run(name, cfg, mutate) for name in NAMES}
    assert got["runc"].rc != 0, f"runc accepted it: the case is wrong ({got['runc'].stdout})"
    assert got["pyrunc"].rc != 0, f"pyrunc accepted what runc refuses: {got['runc'].stderr}"
    assert got["pyrunc"].stderr.strip(), "pyrunc failed without saying why"
