"""The container init: runs in the freshly cloned child, inside the new namespaces, and ends
in execve. Every failure travels back over the sync channel so `create` reports it.

Order (ARCHITECTURE.md, "The process model"): wait for the parent's go; namespaces and
hostname; rootfs mounts and devices; createRuntime/prestart hooks (parent) and
createContainer hooks (here); pivot_root; sysctl; masked/readonly paths; console; cwd;
rlimits; user and capabilities; report ready; block on exec.fifo until `start`;
startContainer hooks; signals and fds; execve.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from runtime import finalize, hooks
from runtime.channel import Channel
from runtime.errors import PyruncError
from runtime.linux import nsjoin, rootfs
from runtime.linux import process_setup as ps
from runtime.linux import syscalls as sc

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

NS_FLAGS = {"pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "mount": sc.CLONE_NEWNS,
            "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS, "user": sc.CLONE_NEWUSER,
            "cgroup": sc.CLONE_NEWCGROUP, "time": sc.CLONE_NEWTIME}


class InitContext:
    """Everything the init needs, handed over by memory: the init is a clone of `create`."""

    def __init__(self, spec: dict[str, Any], bundle: str, rootfs: str, channel: Channel,
                 fifo_fd: int, console_fd: int | None,
                 join_fds: list[tuple[str, int]] | None = None,
                 new_ns: set[str] | None = None, no_pivot: bool = False,
                 preserve_fds: int = 0, cgroup: dict[str, Any] | None = None,
                 has_runtime_hooks: bool = False, new_keyring: str | None = None) -> None:
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.channel = channel
        self.fifo_fd = fifo_fd
        self.console_fd = console_fd
        self.join_fds = join_fds or []  # namespaces joined by path, in the child
        self.new_ns = new_ns or set()
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup = cgroup or {}
        self.has_runtime_hooks = has_runtime_hooks
        self.new_keyring = new_keyring  # session keyring name; None for --no-new-keyring
        self.self_join: list[str] = []  # v1 `tasks` files we write "0" to (create.py)
        self.mount_sock: int | None = None  # where create hands over bind sources (userns)
        self.idmap_fds: dict[int, int] = {}  # mount index -> detached idmapped mount (idmap.py)
        # The mount namespace: "new", "joined" (another one, by path: rootfs_id is the
        # (st_dev, st_ino) the rootfs must have there) or "runtime" (inherited: the root is
        # built in a scratch namespace, see scratchns.py).
        self.mnt_mode = "new"
        self.rootfs_id: tuple[int, int] | None = None
        self.scratch_back: int | None = None


def main(ctx: InitContext) -> None:
    """Never returns: execve on success, os._exit(1) after reporting a failure."""
    try:
        _run(ctx)
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent
        msg = str(e) if isinstance(e, PyruncError) else f"{type(e).__name__}: {e}"
        try:
            ctx.channel.send({"type": "error", "msg": msg})
        except OSError:
            try:
                os.write(2, f"pyrunc init: {msg}\n".encode())
            except OSError:
                pass
    os._exit(1)


def _run(ctx: InitContext) -> None:
    spec = ctx.spec
    proc = spec.get("process") or {}  # none: created, waits on exec.fifo, never started
    # Non-dumpable until execve: the container can't open our /proc/<pid>/exe or memory.
    # An unprivileged parent must still write our uid_map, which non-dumpable makes
    # root-owned: then we wait for "go" (sent after the maps) before turning it off.
    if os.geteuid() == 0:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
    _preload(ctx)
    go = ctx.channel.recv()
    if not go or go.get("type") != "go":
        os._exit(1)  # the parent went away: nothing to report to
    state = go["state"]
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    for path in ctx.self_join:
        _join_cgroup_self(path)
    # Before any namespace join and pivot_root: libseccomp and the config come from the host.
    sec = None
    if spec.get("linux", {}).get("seccomp") is not None and proc:
        from runtime.linux import seccomp
        sec = seccomp.prepare(spec["linux"]["seccomp"], "linux.seccomp", proc, state)
    if "user" in ctx.new_ns:
        _become_root_in_userns()
        later = 0
        for nstype in ("mount", "uts", "ipc", "network"):
            if nstype in ctx.new_ns:
                later |= NS_FLAGS[nstype]
        if later:
            sc.unshare(later)  # as the user namespace's root (see create.py)
    for nstype, fd in ctx.join_fds:
        if nstype == "user" and nsjoin.same_namespace(f"/proc/self/fd/{fd}",
                                                      "/proc/self/ns/user"):
            os.close(fd)
            continue  # born in it (create.py); joining it again would fail with EINVAL
        try:
            sc.setns(fd, NS_FLAGS[nstype])
        except OSError as e:
            raise PyruncError(f"linux.namespaces: cannot join {nstype} namespace: "
                              f"{e.strerror}") from None
        os.close(fd)
    if ctx.mnt_mode == "joined":
        _check_rootfs_visible(ctx)
    if ctx.new_keyring:
        _join_keyring(ctx.new_keyring)
    if "cgroup" in ctx.new_ns:
        sc.unshare(sc.CLONE_NEWCGROUP)  # now that the parent put us in our cgroup
    os.setsid()
    if spec.get("hostname") and "uts" in ctx.new_ns | {t for t, _ in ctx.join_fds}:
        sc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        sc.setdomainname(spec["domainname"])
    if "network" in ctx.new_ns:
        _loopback_up()
    ps.set_oom_score_adj(proc.get("oomScoreAdj"))
    userns = "user" in ctx.new_ns or any(t == "user" for t, _ in ctx.join_fds)
    mount_ctx: dict[str, Any] = {"userns": userns, "cgroupns": "cgroup" in ctx.new_ns,
                                 "cgroup": ctx.cgroup}
    if ctx.mnt_mode == "runtime":
        from runtime.linux import scratchns
        ctx.scratch_back = scratchns.enter()
    if ctx.mount_sock is not None:  # host root opens the bind sources we may not reach
        from runtime.linux import bindsrc
        ctx.channel.send({"type": "mount-sources"})
        mount_ctx["mount_fds"] = bindsrc.receive(ctx.mount_sock)
    mount_ctx["idmap_fds"] = ctx.idmap_fds
    rootfs.prepare(spec, ctx.rootfs, ctx.bundle, mount_ctx)
    for fd in [*mount_ctx.get("mount_fds", {}).values(), *ctx.idmap_fds.values()]:
        os.close(fd)  # never into the container, whatever --preserve-fds reaches
    if ctx.has_runtime_hooks:
        ctx.channel.send({"type": "hooks"})
        reply = ctx.channel.recv()
        if not reply or reply.get("type") != "hooks-done":
            os._exit(1)
    state["status"] = "created"
    # In the container's namespaces: its pid as the container sees it; cwd the rootfs (runc).
    hooks.run("createContainer", spec.get("hooks", {}).get("createContainer", []),
              dict(state, pid=os.getpid()), cwd=ctx.rootfs)
    if ctx.no_pivot:
        rootfs.move_root(ctx.rootfs)
    else:
        rootfs.pivot(ctx.rootfs)
    _sysctl(spec.get("linux", {}).get("sysctl", {}))
    rootfs.finish(spec)
    rootfs.late_propagation(spec)  # last: an unbindable root can't be bound from
    if not proc:
        _leave_scratch(ctx)
        _wait_without_process(ctx)  # never returns
    # The seccomp filter loads last, but before "ready", so create reports a failure; the
    # scratch namespace is left after every mount, the console's bind included.
    program, env = finalize.prepare(proc, spec.get("linux") or {}, sec,
                                    console_fd=ctx.console_fd,
                                    after_console=lambda: _leave_scratch(ctx))
    ctx.channel.send({"type": "ready"})
    ctx.channel.close()
    # Blocks until `pyrunc start` opens the other end.
    fifo = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, b"0")
    os.close(ctx.fifo_fd)
    # `fifo` stays open until execve closes it (O_CLOEXEC): `start` waits for that EOF, so
    # its poststart hooks run after the user's program was executed, as the spec orders.
    try:
        # Still "created" (the user's program has not run); pid as the container sees it.
        hooks.run("startContainer", spec.get("hooks", {}).get("startContainer", []),
                  dict(state, pid=os.getpid()))
    except PyruncError as e:
        os.write(2, f"pyrunc: {e}\n".encode())
        os._exit(1)  # as runc's init does
    try:
        finalize.launch(program, proc["args"], env, ctx.preserve_fds, keep=(fifo,))
    except PyruncError as e:
        os.write(2, f"pyrunc: {e}\n".encode())
        os._exit(127)


def _check_rootfs_visible(ctx: InitContext) -> None:
    """A mount namespace joined by path is where the root gets built (as runc does): the
    rootfs must be there, the same directory the runtime sees."""
    try:
        st = os.stat(ctx.rootfs)
        seen: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        seen = None
    if seen != ctx.rootfs_id:
        raise PyruncError(f"linux.namespaces: the joined mount namespace does not show the "
                          f"rootfs {ctx.rootfs}")


def _leave_scratch(ctx: InitContext) -> None:
    if ctx.scratch_back is not None:
        from runtime.linux import scratchns
        back, ctx.scratch_back = ctx.scratch_back, None
        scratchns.leave(back)


def _wait_without_process(ctx: InitContext) -> None:
    """A config without process: report ready and hold exec.fifo like any created container.
    `start` refuses such a container; if something opens the fifo anyway, exit with why."""
    os.chdir("/")
    ctx.channel.send({"type": "ready"})
    ctx.channel.close()
    fifo = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(fifo)
    os.write(2, b"pyrunc: process: not in config.json, so there is nothing to start\n")
    os._exit(1)


def _preload(ctx: InitContext) -> None:
    """Import now whatever the init needs later: after the switch to a mapped uid the venv
    may be unreadable, and after pivot_root the host's stdlib is out of reach."""
    ps.preload_attrs(ctx.spec.get("process") or {}, ctx.spec.get("linux") or {})
    if ctx.console_fd is not None:
        import runtime.console  # noqa: F401
    hooks_cfg = ctx.spec.get("hooks") or {}
    if hooks_cfg.get("createContainer") or hooks_cfg.get("startContainer"):
        import subprocess  # noqa: F401


def _join_cgroup_self(path: str) -> None:
    """Move ourselves into a v1 cgroup: "0" into its `tasks` file. As the task moved is
    the writer and single-threaded, the kernel skips its global threadgroup lock."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as e:
        raise PyruncError(f"error adding the container's init to cgroups: {path}: "
                          f"{e.strerror}") from None


def _join_keyring(name: str) -> None:
    """Like runc: a session keyring of our own so keys never leak between containers. Kernels
    or seccomp profiles without keyctl are tolerated, as runc does."""
    try:
        sc.join_session_keyring(name)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EDQUOT):
            raise PyruncError(f"cannot join a new session keyring: {e.strerror}") from None


def _become_root_in_userns() -> None:
    """After the parent wrote our maps, take uid/gid 0 of the new user namespace."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass  # container root is not mapped: the process user is set later anyway


def _loopback_up() -> None:
    """Bring `lo` up with one ioctl on a libc socket: no netlink, and no `socket` import."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    fd = sc.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(fd, siocgifflags, req))[1]
        fcntl.ioctl(fd, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))
    finally:
        os.close(fd)


def _sysctl(values: dict[str, str]) -> None:
    for key, value in values.items():
        if ".." in key.split("/") or key.startswith("/"):
            raise PyruncError(f"linux.sysctl: bad key {key!r}")
        # runc takes both spellings: net.ipv4.ip_forward and net/ipv4/ip_forward (the
        # latter keeps dots inside names, e.g. an interface called eth0.100).
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise PyruncError(f"linux.sysctl.{key}: cannot set to {value!r}: "
                              f"{e.strerror}") from None
