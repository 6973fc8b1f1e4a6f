"""The config's mounts list: option parsing and mounting each entry inside the rootfs.

Targets are resolved with pathsafe.secure_join and mounted through /proc/self/fd/N of an
O_PATH descriptor whose real path was checked to lie under the rootfs, so a symlink swapped
in by the image can never redirect a mount onto the host.
"""

from __future__ import annotations

import os
import stat

from runtime.errors import PyruncError
from runtime.linux import mountcalls as mc
from runtime.linux import syscalls as sc
from runtime.linux.pathsafe import mkdir_all_inside, open_inside, secure_join

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# option -> (clear, flag): clear=True means the option removes the flag.
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "nosuid": (False, sc.MS_NOSUID), "suid": (True, sc.MS_NOSUID),
    "nodev": (False, sc.MS_NODEV), "dev": (True, sc.MS_NODEV),
    "noexec": (False, sc.MS_NOEXEC), "exec": (True, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS), "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC), "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK), "nomand": (True, sc.MS_MANDLOCK),
    "atime": (True, sc.MS_NOATIME), "noatime": (False, sc.MS_NOATIME),
    "diratime": (True, sc.MS_NODIRATIME), "nodiratime": (False, sc.MS_NODIRATIME),
    "relatime": (False, sc.MS_RELATIME), "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "lazytime": (False, sc.MS_LAZYTIME), "nolazytime": (True, sc.MS_LAZYTIME),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW), "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "bind": (False, sc.MS_BIND), "rbind": (False, sc.MS_BIND | sc.MS_REC),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Options that only steer the runtime and must not reach the kernel as data.
_IGNORED = {"tmpcopyup", "idmap", "ridmap", "defaults"}


# Recursive options (runtime-spec 1.1): option -> (clear, MOUNT_ATTR_*), applied to the mount
# and every submount with mount_setattr(2).
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY), "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID), "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV), "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC), "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}
# The access-time mode is one value, not a flag: the last of these wins. The negations go
# back to the kernel's default (relatime), except norelatime, which asks for full updates.
RECURSIVE_ATIME = {
    "rrelatime": sc.MOUNT_ATTR_RELATIME, "rnoatime": sc.MOUNT_ATTR_NOATIME,
    "rstrictatime": sc.MOUNT_ATTR_STRICTATIME, "ratime": sc.MOUNT_ATTR_RELATIME,
    "rnostrictatime": sc.MOUNT_ATTR_RELATIME, "rnorelatime": sc.MOUNT_ATTR_STRICTATIME,
}


class MountOptions:
    """A mount's options split into flags, propagation changes, filesystem data, and the
    recursive attributes (set, clear; `rec_opts` names them for errors)."""

    def __init__(self) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.data: list[str] = []
        self.rec_set = 0
        self.rec_clr = 0
        self.rec_opts: list[str] = []


def parse_options(options: list[str]) -> MountOptions:
    out = MountOptions()
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            out.flags = out.flags & ~flag if clear else out.flags | flag
        elif opt in RECURSIVE or opt in RECURSIVE_ATIME:
            _add_recursive(out, opt)
        elif opt in PROPAGATION:
            out.propagation.append(PROPAGATION[opt])
        elif opt in _IGNORED:
            continue
        else:
            out.data.append(opt)
    return out


def _add_recursive(out: MountOptions, opt: str) -> None:
    out.rec_opts.append(opt)
    if opt in RECURSIVE_ATIME:
        out.rec_set = (out.rec_set & ~sc.MOUNT_ATTR__ATIME) | RECURSIVE_ATIME[opt]
        out.rec_clr |= sc.MOUNT_ATTR__ATIME  # the kernel wants the whole field cleared
        return
    clear, flag = RECURSIVE[opt]
    if clear:
        out.rec_set &= ~flag
        out.rec_clr |= flag
    else:
        out.rec_set |= flag
        out.rec_clr &= ~flag


def apply_recursive(fd: int, opts: MountOptions, dest: str) -> None:
    """Give the mount at `fd` and all its submounts the recursive attributes."""
    if not opts.rec_opts:
        return
    try:
        mc.calls.mount_setattr(fd, opts.rec_set, opts.rec_clr)
    except OSError as e:
        if e.errno in (38, 22) and not has_mount_setattr():  # ENOSYS, EINVAL
            raise PyruncError(f"mount {dest}: options {','.join(opts.rec_opts)} need "
                              "mount_setattr(2) (Linux 5.12 or later)") from None
        raise PyruncError(f"mount {dest}: cannot apply {','.join(opts.rec_opts)}: "
                          f"{e.strerror}") from None


def has_mount_setattr() -> bool:
    """Probe with an invalid call: ENOSYS when the kernel lacks the syscall."""
    try:
        sc.mount_setattr(-1, 0, 0)
    except OSError as e:
        return e.errno != 38
    return True


_STATVFS_TO_MS = ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
                  (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
                  (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
                  (os.ST_RELATIME, sc.MS_RELATIME))


def locked_flags(path: str) -> int:
    """The flags a bind remount must keep (the kernel refuses to clear locked ones)."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_TO_MS if f & st)


def remount_readonly(path: str, bind: bool = True) -> None:
    flags = sc.MS_REMOUNT | sc.MS_RDONLY | (sc.MS_BIND if bind else 0) | locked_flags(path)
    mc.calls.mount(None, path, None, flags)


def _bind_remount(path: str, flags: int) -> None:
    """A bind mount ignores ro/nosuid/...: a remount gives it the config's flags."""
    flags &= ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    mc.calls.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | flags | locked_flags(path))


class _Target:
    """An O_PATH fd on a verified mount target; mount through its /proc/self/fd path."""

    def __init__(self, rootfs: str, resolved: str) -> None:
        self.fd = open_inside(rootfs, resolved)
        self.proc = f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


def _make_target(rootfs: str, dest: str, is_file: bool) -> str:
    """The mount point inside rootfs, created (a file for a file source) if missing."""
    resolved = secure_join(rootfs, dest)
    try:
        if is_file:
            mkdir_all_inside(rootfs, os.path.dirname(os.path.relpath(resolved, rootfs)) or "/")
            if not os.path.lexists(resolved):
                flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(resolved, flags, 0o644))
        else:
            mkdir_all_inside(rootfs, os.path.relpath(resolved, rootfs))
    except OSError as e:  # e.g. a root-owned rootfs seen from a user namespace's root
        raise PyruncError(f"mount {dest}: cannot create the mount point "
                          f"{os.path.relpath(resolved, rootfs)}: {e.strerror}") from None
    return resolved


def mount_entry(m: dict[str, Any], rootfs: str, bundle: str, ctx: dict[str, Any],
                src_fd: int | None = None, tree_fd: int | None = None) -> None:
    """Mount one config entry inside rootfs. `ctx` carries cgroup paths and namespaces;
    `src_fd`, an O_PATH fd on the bind source opened by host root (bindsrc.py), replaces it;
    `tree_fd`, a detached idmapped mount of the source (idmap.py), is moved into place.
    A read-only /dev is mounted writable here: finish() makes it read-only after its
    devices and submounts are in place."""
    mtype = m.get("type", "") or ""
    opts = parse_options(m.get("options", []))
    dest = m["destination"]
    if os.path.normpath(dest) == "/dev":
        opts.flags &= ~sc.MS_RDONLY
    if mtype in ("proc", "sysfs"):
        _check_plain_dir(rootfs, dest, mtype)
    source = m.get("source", "") or ""
    is_bind = bool(opts.flags & sc.MS_BIND) or mtype == "bind"
    if mtype == "bind":
        opts.flags |= sc.MS_BIND
    if is_bind:
        _mount_bind(m, rootfs, bundle, opts, source, src_fd, tree_fd)
        return
    if mtype == "cgroup":
        _mount_cgroup(m, rootfs, opts, ctx)
        if opts.rec_opts:
            t = _Target(rootfs, secure_join(rootfs, dest))
            try:
                apply_recursive(t.fd, opts, dest)
            finally:
                t.close()
        return
    keep_mode = _dir_mode(rootfs, dest) if mtype == "tmpfs" else None
    resolved = _make_target(rootfs, dest, False)
    tgt = _Target(rootfs, resolved)
    try:
        data = ",".join(opts.data) or None
        flags = opts.flags & ~sc.MS_REMOUNT
        # tmpfs as runc does it: mounted writable, given the mode of the directory it
        # covers, then made read-only per mount (the superblock stays rw).
        ro_later = mtype == "tmpfs" and bool(flags & sc.MS_RDONLY)
        try:
            mc.calls.mount(source or mtype, tgt.proc, mtype, flags & ~sc.MS_RDONLY if ro_later
                           else flags, data)
            if keep_mode is not None or ro_later:
                tgt.close()
                tgt = _Target(rootfs, resolved)
                if keep_mode is not None:
                    os.chmod(tgt.proc, keep_mode)
                if ro_later:
                    _bind_remount(tgt.proc, flags)
        except OSError as e:
            if mtype == "sysfs" and e.errno == 1 and ctx.get("userns"):
                # sysfs can't be mounted in a user ns without its own netns: bind the host's.
                mc.calls.mount("/sys", tgt.proc, None, sc.MS_BIND | sc.MS_REC)
                tgt.close()
                tgt = _Target(rootfs, resolved)
                remount_readonly(tgt.proc) if opts.flags & sc.MS_RDONLY else None
            else:
                raise PyruncError(f"mount {mtype} on {dest}: {e.strerror}") from None
        if opts.propagation or opts.rec_opts:
            tgt.close()
            tgt = _Target(rootfs, resolved)  # the new mount, not the directory under it
        for p in opts.propagation:
            mc.calls.mount(None, tgt.proc, None, p)
        apply_recursive(tgt.fd, opts, dest)
    finally:
        tgt.close()


def _mount_bind(m: dict[str, Any], rootfs: str, bundle: str, opts: MountOptions,
                source: str, src_fd: int | None, tree_fd: int | None = None) -> None:
    dest = m["destination"]
    if not source.startswith("/"):
        source = os.path.join(bundle, source)
    if tree_fd is not None:
        src_fd = tree_fd
    try:
        st = os.stat(f"/proc/self/fd/{src_fd}" if src_fd is not None else source)
    except FileNotFoundError:
        raise PyruncError(f"mount {dest}: source {source} does not exist") from None
    resolved = _make_target(rootfs, dest, not stat.S_ISDIR(st.st_mode))
    tgt = _Target(rootfs, resolved)
    try:
        src = source if src_fd is None else f"/proc/self/fd/{src_fd}"
        try:
            if tree_fd is not None:
                mc.calls.move_mount_fd(tree_fd, tgt.fd)
            else:
                mc.calls.mount(src, tgt.proc, None, opts.flags & (sc.MS_BIND | sc.MS_REC))
        except OSError as e:
            raise PyruncError(f"mount {dest}: cannot bind {source}: {e.strerror}") from None
        # Reopen: only a fresh lookup reaches the new mount (the old fd still names the
        # directory underneath, where a remount or propagation change is EINVAL).
        tgt.close()
        tgt = _Target(rootfs, resolved)
        extra = opts.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            flags = sc.MS_BIND | sc.MS_REMOUNT | extra | locked_flags(tgt.proc)
            mc.calls.mount(None, tgt.proc, None, flags)
        for p in opts.propagation:
            mc.calls.mount(None, tgt.proc, None, p)
        apply_recursive(tgt.fd, opts, dest)
    finally:
        tgt.close()


def _check_plain_dir(rootfs: str, dest: str, mtype: str) -> None:
    """proc and sysfs go on an ordinary directory only: a symlink (or file) there is
    refused, as runc does, since mounting through it has been an escape before."""
    parent = secure_join(rootfs, os.path.dirname(os.path.normpath("/" + dest)))
    path = os.path.join(parent, os.path.basename(os.path.normpath(dest)))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise PyruncError(f"mount {mtype} on {dest}: {dest} is {kind}; {mtype} must be "
                          "mounted on ordinary directory")


def _dir_mode(rootfs: str, dest: str) -> int | None:
    """The permission bits of an existing directory at dest, else None."""
    try:
        st = os.stat(secure_join(rootfs, dest))
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISDIR(st.st_mode) else None


def _mount_cgroup(m: dict[str, Any], rootfs: str, opts: MountOptions,
                  ctx: dict[str, Any]) -> None:
    """cgroup mounts: cgroup2 on a unified host; on v1/hybrid a tmpfs with one mount per
    hierarchy (fresh mounts in a cgroup namespace, binds of our cgroup dirs otherwise)."""
    cg = ctx.get("cgroup") or {}
    dest = m["destination"]
    flags = opts.flags & ~sc.MS_REMOUNT
    if cg.get("version") == 2:
        resolved = _make_target(rootfs, dest, False)
        tgt = _Target(rootfs, resolved)
        try:
            if ctx.get("cgroupns"):
                mc.calls.mount("cgroup", tgt.proc, "cgroup2", flags)
            else:
                mc.calls.mount(cg["unified"], tgt.proc, None, sc.MS_BIND | sc.MS_REC)
                if flags & ~(sc.MS_BIND | sc.MS_REC):
                    tgt.close()
                    tgt = _Target(rootfs, resolved)
                    _bind_remount(tgt.proc, flags)
        finally:
            tgt.close()
        return
    resolved = _make_target(rootfs, dest, False)
    tgt = _Target(rootfs, resolved)
    try:
        mc.calls.mount("tmpfs", tgt.proc, "tmpfs", (flags & ~sc.MS_RDONLY) | sc.MS_NOSUID
                       | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    finally:
        tgt.close()
    for name, info in sorted((cg.get("hierarchies") or {}).items()):
        if info["fstype"] != "cgroup":
            continue  # a hybrid host's cgroup2 stays out, as with runc: type cgroup is v1 here
        sub = _make_target(rootfs, os.path.join(dest, name), False)
        t = _Target(rootfs, sub)
        try:
            if ctx.get("cgroupns"):
                mc.calls.mount("cgroup", t.proc, info["fstype"], flags, info["options"])
            else:
                mc.calls.mount(info["path"], t.proc, None, sc.MS_BIND | sc.MS_REC)
                if flags & ~(sc.MS_BIND | sc.MS_REC):
                    t.close()
                    t = _Target(rootfs, sub)
                    _bind_remount(t.proc, flags)
        finally:
            t.close()
        for alias in info.get("aliases", []):
            link = secure_join(rootfs, os.path.join(dest, alias))
            if not os.path.lexists(link):
                os.symlink(name, link)
    if flags & sc.MS_RDONLY:
        remount_readonly(secure_join(rootfs, dest), bind=False)
