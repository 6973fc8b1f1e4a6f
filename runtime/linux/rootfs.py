"""Building the container's root: propagation, the mounts list, /dev, pivot_root, then the
masked and read-only paths. Runs in the init, inside the new mount namespace."""

from __future__ import annotations

import os
import stat

from runtime.errors import PyruncError
from runtime.linux import mountcalls as mc
from runtime.linux import syscalls as sc
from runtime.linux.mounts import PROPAGATION, mount_entry, parse_options, remount_readonly
from runtime.linux.pathsafe import mkdir_all_inside, open_inside, secure_join

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# (path, type, major, minor) that every container gets, as the spec's runtime-linux.md lists.
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
]
DEV_SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]


def root_propagation(spec: dict[str, Any]) -> int:
    """The linux.rootfsPropagation flags (rslave when unset)."""
    prop = spec.get("linux", {}).get("rootfsPropagation") or ""
    return PROPAGATION.get(prop, sc.MS_SLAVE | sc.MS_REC)


def prepare(spec: dict[str, Any], rootfs: str, bundle: str, ctx: dict[str, Any]) -> None:
    """Everything before pivot_root: propagation, bind of the rootfs, mounts, devices.
    ctx["mount_fds"] maps a mount's index to an O_PATH fd on its bind source."""
    linux = spec.get("linux", {})
    flag = root_propagation(spec)
    # Stop our mounts from reaching the host. Unbindable can't be set yet (the rootfs is
    # bound from "/" below): it and shared are given to the new root after the pivot.
    mc.calls.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC if flag & sc.MS_UNBINDABLE else flag)
    # A shared parent would carry the rootfs bind to the host, and pivot_root refuses it.
    _unshare(rootfs)
    mc.calls.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    # As runc: the default devices are made unless /dev is a bind mount (then they come
    # with it); with no /dev mount at all they go into the rootfs's own /dev.
    dev_is_bound = False
    fds = ctx.get("mount_fds") or {}
    trees = ctx.get("idmap_fds") or {}
    for i, m in enumerate(spec.get("mounts", [])):
        mount_entry(m, rootfs, bundle, ctx, fds.get(i), trees.get(i))
        if os.path.normpath(m["destination"]) == "/dev":
            dev_is_bound = m.get("type") == "bind" or bool(
                {"bind", "rbind"} & set(m.get("options", [])))
    cwd = spec.get("process", {}).get("cwd") or "/"
    if cwd != "/":
        mkdir_all_inside(rootfs, cwd)  # runc creates a missing cwd before root goes read-only
    if not dev_is_bound:
        make_devices(rootfs, linux.get("devices", []), ctx.get("userns", False))
        make_dev_symlinks(rootfs)
    elif linux.get("devices"):
        make_devices(rootfs, linux["devices"], ctx.get("userns", False), defaults=False)


def make_devices(rootfs: str, devices: list[dict[str, Any]], userns: bool,
                 defaults: bool = True) -> None:
    """Default devices plus linux.devices: mknod as root, bind from the host in a user ns."""
    old = os.umask(0)
    try:
        wanted: dict[str, dict[str, Any]] = {}
        if defaults:
            for path, t, major, minor in DEFAULT_DEVICES:
                wanted[path] = {"path": path, "type": t, "major": major, "minor": minor,
                                "fileMode": 0o666, "uid": 0, "gid": 0}
        for d in devices:
            wanted[os.path.normpath(d["path"])] = d
        for d in wanted.values():
            _make_device(rootfs, d, userns)
    finally:
        os.umask(old)


def _make_device(rootfs: str, d: dict[str, Any], userns: bool) -> None:
    target = secure_join(rootfs, d["path"])
    mkdir_all_inside(rootfs, os.path.dirname(os.path.relpath(target, rootfs)) or "/")
    if os.path.lexists(target):
        if os.path.isdir(target) or os.path.islink(target):
            raise PyruncError(f"linux.devices: {d['path']} exists and is not a device file")
        os.unlink(target)
    t = d["type"]
    mode = d.get("fileMode", 0o666) & 0o7777
    if userns:
        fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.close(fd)
        tfd = open_inside(rootfs, target)
        try:
            mc.calls.mount(d["path"], f"/proc/self/fd/{tfd}", None, sc.MS_BIND)
        finally:
            os.close(tfd)
        return
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[t]
    dev = os.makedev(d.get("major", 0), d.get("minor", 0)) if t != "p" else 0
    os.mknod(target, kind | mode, dev)
    os.chown(target, d.get("uid", 0), d.get("gid", 0), follow_symlinks=False)


def make_dev_symlinks(rootfs: str) -> None:
    for src, link in DEV_SYMLINKS + [("pts/ptmx", "/dev/ptmx")]:
        path = secure_join(rootfs, link)
        if not os.path.lexists(path):
            os.symlink(src, path)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then detach the old root: no temporary directory is needed."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        _unshare("/")  # pivot_root refuses a shared current root
        os.fchdir(new)
        mc.calls.pivot_root(".", ".")
        os.fchdir(old)
        # The old root must not propagate its unmount to the host.
        mc.calls.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        mc.calls.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs onto / and chroot (for ramdisk roots pivot_root refuses).
    The old root stays reachable in this mount namespace, so every whole procfs and sysfs
    outside the rootfs goes first: the kernel only lets a new proc or sysfs be mounted
    (e.g. by `unshare -mrp` in the container) where a fully visible one exists."""
    _unshare("/")  # a move onto a shared "/" would reach the host
    _hide_pseudo_filesystems(rootfs)
    os.chdir(rootfs)
    mc.calls.mount(rootfs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def late_propagation(spec: dict[str, Any]) -> None:
    """After the pivot and finish(): shared and unbindable, which the old root could not take, go on
    the container's root (private and slave were set before)."""
    flag = root_propagation(spec)
    if flag & (sc.MS_SHARED | sc.MS_UNBINDABLE):
        mc.calls.mount(None, "/", None, flag)


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(root, mount point, optional fields, fstype) of every mount, octal escapes decoded."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f.read().decode(errors="surrogateescape").splitlines():
            left, _, right = line.partition(" - ")
            fields = left.split(" ")
            out.append((_unescape(fields[3]), _unescape(fields[4]), " ".join(fields[6:]),
                        right.split(" ", 1)[0]))
    return out


def _unescape(s: str) -> str:
    """Undo mountinfo's \\ooo escapes (space, tab, newline and backslash)."""
    if "\\" not in s:
        return s
    head, *rest = s.split("\\")
    return head + "".join(chr(int(p[:3], 8)) + p[3:] for p in rest)


def _unshare(path: str) -> None:
    """Make the mount holding `path` (the topmost on the longest matching mount point)
    private if it is shared; its submounts keep theirs."""
    best, shared = "", False
    for _root, mp, optional, _fs in _mountinfo():
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if len(mp) >= len(best):  # a later line on the same point is mounted on top
                best, shared = mp, "shared:" in optional
    if shared:
        mc.calls.mount(None, best, None, sc.MS_PRIVATE)


def _hide_pseudo_filesystems(rootfs: str) -> None:
    prefix = rootfs.rstrip("/") + "/"
    for root, mp, _opt, fstype in _mountinfo():
        if fstype not in ("proc", "sysfs") or root != "/" or mp == rootfs \
                or mp.startswith(prefix):
            continue
        try:
            mc.calls.mount(None, mp, None, sc.MS_SLAVE | sc.MS_REC)  # the unmount stays here
            mc.calls.umount2(mp, sc.MNT_DETACH)
        except FileNotFoundError:
            continue  # already gone with a parent
        except OSError as e:
            if e.errno == 2:
                continue
            if e.errno not in (1, 22):  # EPERM, EINVAL: cover what we can't unmount
                raise
            mc.calls.mount("tmpfs", mp, "tmpfs", 0)


def finish(spec: dict[str, Any]) -> None:
    """After pivot: the cwd, masked paths, read-only paths, a read-only root."""
    make_cwd(spec.get("process", {}).get("cwd", "/"))
    linux = spec.get("linux", {})
    # Read-only first, then masks (runc's order): a recursive read-only bind of a parent
    # would otherwise copy the masks below it.
    for path in linux.get("readonlyPaths", []):
        readonly_path(path)
    for path in linux.get("maskedPaths", []):
        mask_path(path)
    # A read-only /dev was mounted writable for its devices and submounts (runc's order).
    for m in spec.get("mounts", []):
        if os.path.normpath(m["destination"]) == "/dev":
            if parse_options(m.get("options") or []).flags & sc.MS_RDONLY:
                if spec.get("process", {}).get("terminal") and not os.path.lexists(
                        "/dev/console"):
                    # the console is bound over this file later, when /dev is read-only
                    os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC,
                                     0o600))
                remount_readonly("/dev")
            break
    if spec.get("root", {}).get("readonly"):
        remount_readonly("/")


def make_cwd(cwd: str) -> None:
    """A missing cwd is created (as runc does) while the root is still writable."""
    if not os.path.isdir(cwd):
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)
        except OSError as e:
            raise PyruncError(f"process.cwd: cannot create {cwd}: {e.strerror}") from None


def mask_path(path: str) -> None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        mc.calls.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
    else:
        mc.calls.mount("/dev/null", path, None, sc.MS_BIND)


def readonly_path(path: str) -> None:
    try:
        mc.calls.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == 2:
            return
        raise
    remount_readonly(path)
