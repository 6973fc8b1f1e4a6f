"""Raw Linux syscalls the stdlib lacks, through ctypes.

Only cheap modules are imported here: this sits on the create/start hot path.
"""

from __future__ import annotations

import os

from runtime.linux import cdll as ctypes  # not the ctypes package: ~1.8 ms a call

_libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL across the call, like os.fork does around fork(2).
_pylibc = ctypes.PyDLL(None, use_errno=True)

_MACHINE = os.uname().machine  # not `platform`: it costs a few ms to import
if _MACHINE in ("x86_64", "amd64"):
    SYS = {"clone": 56, "pivot_root": 155, "setns": 308, "unshare": 272,
           "capget": 125, "capset": 126, "seccomp": 317, "pidfd_open": 434, "keyctl": 250,
           "clone3": 435, "mount_setattr": 442, "open_tree": 428, "move_mount": 429}
elif _MACHINE in ("aarch64", "arm64"):
    SYS = {"clone": 220, "pivot_root": 41, "setns": 268, "unshare": 97,
           "capget": 90, "capset": 91, "seccomp": 277, "pidfd_open": 434, "keyctl": 219,
           "clone3": 435, "mount_setattr": 442, "open_tree": 428, "move_mount": 429}
else:  # pragma: no cover - other architectures are not built for yet
    raise ImportError(f"pyrunc: unsupported architecture {_MACHINE}")
# process_attrs.py's syscalls (scheduler, I/O priority, memory policy)
SYS.update({"sched_setattr": 314, "ioprio_set": 251, "set_mempolicy": 238}
           if _MACHINE in ("x86_64", "amd64") else
           {"sched_setattr": 274, "ioprio_set": 30, "set_mempolicy": 237})

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# mount_setattr(2) (Linux 5.12).
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
MOUNT_ATTR_IDMAP = 0x100000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc.syscall.restype = ctypes.c_long
_pylibc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2); the message names the target, since that is what users look for."""
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, f"mount {source or fstype or ''} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS["pivot_root"], _b(new_root), _b(put_old)), "pivot_root")


def open_tree_clone(path: str) -> int:
    """open_tree(2) with OPEN_TREE_CLONE | AT_RECURSIVE (Linux 5.2): an fd (close-on-exec)
    on a detached copy of the mount tree at `path`, in no mount namespace."""
    flags = 1 | 0o2000000 | AT_RECURSIVE  # OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
    return _check(_libc.syscall(SYS["open_tree"], -100, _b(path), ctypes.c_uint(flags)),
                  f"open_tree {path}")


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True) -> None:
    """mount_setattr(2) on the mount `fd` names (AT_EMPTY_PATH), with its submounts if
    `recursive`; propagation and idmap are left alone."""
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(SYS["mount_setattr"], fd, b"", ctypes.c_uint(flags), ctypes.byref(attr),
                         ctypes.c_size_t(32)), "mount_setattr")


def open_tree_detached(path: str, recursive: bool) -> int:
    """open_tree(2) with OPEN_TREE_CLONE: an fd (close-on-exec) on a detached copy of the
    mount at `path` (with its submounts if `recursive`), never attached anywhere yet."""
    flags = 1 | 0o2000000 | (AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(SYS["open_tree"], -100, _b(path), ctypes.c_uint(flags)),
                  f"open_tree {path}")


def mount_setattr_idmap(fd: int, userns_fd: int, recursive: bool) -> None:
    """mount_setattr(2) MOUNT_ATTR_IDMAP: the detached mount `fd` (and its submounts if
    `recursive`) shows file owners through the mappings of the user namespace `userns_fd`."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(SYS["mount_setattr"], fd, b"", ctypes.c_uint(flags), ctypes.byref(attr),
                         ctypes.c_size_t(32)), "mount_setattr")


def move_mount_fd(from_fd: int, to_fd: int) -> None:
    """move_mount(2) of the detached mount `from_fd` onto the directory or file `to_fd`
    (MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)."""
    _check(_libc.syscall(SYS["move_mount"], from_fd, b"", to_fd, b"", ctypes.c_uint(0x4 | 0x40)),
           "move_mount")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.syscall(SYS["setns"], fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.syscall(SYS["unshare"], flags), "unshare")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_libc.prctl(option, a2, a3, a4, a5), f"prctl({option})")


def _fork_like(*args: object) -> int:
    """Run a fork-like syscall as os.fork does: PyOS_BeforeFork/AfterFork keep the
    interpreter's locks sane; returns 0 in the child, the child's pid in the parent."""
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _pylibc.syscall(*args)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def clone(flags: int) -> int:
    """fork(2) with namespace flags: returns 0 in the child, the child's pid in the parent.
    The raw syscall (no new stack) behaves like fork, so the child resumes right here."""
    return _fork_like(SYS["clone"], ctypes.c_ulong(flags | SIGCHLD), None, None, None, None)


CLONE_INTO_CGROUP = 0x200000000


def clone_into_cgroup(flags: int, cgroup_fd: int) -> int:
    """clone3(2) like `clone`, with the child born in the cgroup2 directory `cgroup_fd`:
    no migration afterwards. Raises OSError where the kernel lacks clone3 or the flag."""
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    # stack_size, tls, set_tid, set_tid_size, cgroup (all u64); no stack: fork semantics.
    args = (ctypes.c_uint64 * 11)()
    args[0] = flags | CLONE_INTO_CGROUP
    args[4] = SIGCHLD
    args[10] = cgroup_fd
    return _fork_like(SYS["clone3"], ctypes.byref(args), ctypes.c_size_t(88))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread as 64-bit masks."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(SYS["capget"], ctypes.byref(hdr), data), "capget")
    join = lambda f: getattr(data[0], f) | (getattr(data[1], f) << 32)  # noqa: E731
    return join("effective"), join("permitted"), join("inheritable")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(SYS["capset"], ctypes.byref(hdr), data), "capset")


def join_session_keyring(name: str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a fresh keyring, not the host's."""
    return _check(_libc.syscall(SYS["keyctl"], 1, name.encode()), "keyctl")


def socket(family: int, kind: int) -> int:
    """socket(2) as a bare fd, for one ioctl, without importing the socket module."""
    return _check(_libc.socket(family, kind | os.O_CLOEXEC, 0), "socket")


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(SYS["pidfd_open"], pid, 0), "pidfd_open")


def sched_setattr(policy: int, flags: int, nice: int, priority: int, runtime: int,
                  deadline: int, period: int) -> None:
    """sched_setattr(2) on this thread: struct sched_attr as of Linux 4.13 (56 bytes, the
    utilization clamps left 0)."""
    attr = (ctypes.c_uint32 * 14)()
    attr[0], attr[1] = 56, policy
    ctypes.c_uint64.from_buffer(attr, 8).value = flags
    ctypes.c_int32.from_buffer(attr, 16).value = nice
    attr[5] = priority
    for off, val in ((24, runtime), (32, deadline), (40, period)):
        ctypes.c_uint64.from_buffer(attr, off).value = val
    _check(_libc.syscall(SYS["sched_setattr"], 0, ctypes.byref(attr), 0), "sched_setattr")


def ioprio_set(ioprio: int) -> None:
    """ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio): this process, inherited by its children."""
    _check(_libc.syscall(SYS["ioprio_set"], 1, 0, ioprio), "ioprio_set")


def personality(persona: int) -> None:
    _libc.personality.restype = ctypes.c_int
    _check(_libc.personality(ctypes.c_ulong(persona)), "personality")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    """set_mempolicy(2) for this thread; `mode` may carry MPOL_F_* flags; no nodes: NULL."""
    if not nodes:
        _check(_libc.syscall(SYS["set_mempolicy"], mode, None, ctypes.c_ulong(0)),
               "set_mempolicy")
        return
    words = max(nodes) // 64 + 1
    mask = (ctypes.c_ulong * words)()
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    _check(_libc.syscall(SYS["set_mempolicy"], mode, mask, ctypes.c_ulong(words * 64 + 1)),
           "set_mempolicy")
