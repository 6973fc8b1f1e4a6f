"""`create`: from a bundle to a container whose init waits on exec.fifo.

The caller's own namespaces stay untouched: the init is a raw clone(2) with the namespace
flags. A failure at any step kills the init, removes the cgroup and the state directory, and
raises with the init's own reason, so nothing is left half-made.
"""

from __future__ import annotations

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os

from runtime import hooks
from runtime import spec as specmod
from runtime.cgroups import new_manager
from runtime.cgroups.common import enter_dir
from runtime.channel import Channel
from runtime.errors import PyruncError
from runtime.init import NS_FLAGS, InitContext
from runtime.init import main as init_main
from runtime.linux import nsjoin
from runtime.linux import syscalls as sc
from runtime.state import StateDir, atomic_write, now_rfc3339, proc_start_time

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# setns() on these only changes what our *children* get, so we join them before cloning.
_JOIN_IN_PARENT = ("pid", "time")


class CreateOptions:
    """The flags of `create` (and `run`), as runc names them."""

    def __init__(self, root: str, cid: str, bundle: str, pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 rootless: bool | None = None) -> None:
        self.root = root
        self.cid = cid
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.rootless = os.geteuid() != 0 if rootless is None else rootless


def create(opts: CreateOptions, warn=lambda msg: None) -> dict[str, Any]:
    """Create the container and return its saved state (the init is left waiting)."""
    sd = StateDir(opts.root, opts.cid)
    bundle = os.path.abspath(opts.bundle)
    config = specmod.load(bundle)
    if sd.exists():
        raise PyruncError(f"container with id {opts.cid} already exists")
    rootfs = os.path.join(bundle, config["root"]["path"])
    if not os.path.isdir(rootfs):
        raise PyruncError(f"root.path: rootfs {rootfs} is not a directory")
    rootfs = os.path.realpath(rootfs)
    if (config.get("process") or {}).get("terminal") and not opts.console_socket:
        raise PyruncError("process.terminal is true but no --console-socket was given")
    _warn_labels(config, warn)
    netdevs = _plan_netdevs(config)
    sd.make()
    pid = 0
    mgr = None
    attached = None
    opened: list[int] = []
    try:
        os.mkfifo(sd.fifo, 0o622)
        os.chmod(sd.fifo, 0o622)
        fifo_fd = os.open(sd.fifo, os.O_PATH | os.O_CLOEXEC)
        opened.append(fifo_fd)
        linux = config.get("linux", {})
        mgr = _cgroup(linux, opts.cid, opts.rootless, warn)
        nss = specmod.namespaces(config)
        flags = 0
        new_ns: set[str] = set()
        join_child: list[tuple[str, int]] = []
        userns_first = "user" in nss and not nss["user"]
        mnt_mode = nsjoin.mount_mode(nss.get("mount"))
        for nstype, path in nss.items():
            if nstype == "mount" and mnt_mode == "runtime":
                continue  # our own mount namespace, named by path: nothing to join
            if not path:
                new_ns.add(nstype)
                # cgroup: unshared by the init once it is in its cgroup. time: its flag
                # overlaps clone(2)'s exit-signal byte, and unshare() only moves children.
                # With a new user namespace, like runc, only it and the pid namespace come
                # with the clone; the init unshares the rest as the namespace's root, so
                # e.g. the mqueue root belongs to container root, not to unmapped host root.
                if nstype in ("cgroup", "time"):
                    continue
                if userns_first and nstype not in ("user", "pid"):
                    continue
                flags |= NS_FLAGS[nstype]
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise PyruncError(f"linux.namespaces: {nstype} path {path}: {e.strerror}") from None
            opened.append(fd)
            if nstype in _JOIN_IN_PARENT:
                sc.setns(fd, NS_FLAGS[nstype])
            else:
                join_child.append((nstype, fd))
        if "time" in new_ns:
            _new_time_namespace(linux.get("timeOffsets") or {})
        console_fd = _connect_console(opts.console_socket) if opts.console_socket else None
        if console_fd is not None:
            opened.append(console_fd)
        if (linux.get("seccomp") or {}).get("listenerPath"):
            from runtime.linux import seccomp  # the agent is dialed from the host's netns
            opened.extend(seccomp.dial_agent(linux["seccomp"], bundle))
        if any(isinstance(m, dict) and ("uidMappings" in m or "gidMappings" in m
                                        or {"idmap", "ridmap"} & set(m.get("options") or []))
               for m in config.get("mounts") or []):
            from runtime.linux import idmap  # made here, as host root (idmap.py)
            ctx_idmap = idmap.prepare(config, bundle, idmap.plan(config))
            opened.extend(ctx_idmap.values())
        else:
            ctx_idmap = {}
        parent_ch, child_ch = Channel.pair()
        opened.extend([parent_ch.rfd, parent_ch.wfd])
        cfg_hooks = config.get("hooks", {}) or {}
        ctx = InitContext(spec=config, bundle=bundle, rootfs=rootfs, channel=child_ch,
                          fifo_fd=fifo_fd, console_fd=console_fd, join_fds=join_child,
                          new_ns=new_ns, no_pivot=opts.no_pivot,
                          preserve_fds=opts.preserve_fds,
                          cgroup=mgr.to_state() if mgr else {},
                          has_runtime_hooks=bool(cfg_hooks.get("prestart")
                                                 or cfg_hooks.get("createRuntime")),
                          new_keyring=None if opts.no_new_keyring else f"_ses.{opts.cid}")
        # Joining the cgroup: the cgroup2 directory at birth (clone3); the v1 ones by the
        # init itself, "0" into each `tasks` file first thing after "go" (a single-threaded
        # task moving itself skips the kernel's threadgroup rwsem; a pid we write waits for
        # an RCU grace period, ~10 ms here, while the init is long ready); we write the
        # init's pid into the rest. Only the container's processes ever enter its cgroup,
        # never ours: a frozen one must not freeze the runtime (_cgroup refused a frozen
        # one; a freeze after that stops the init, which the wait below notices). A user
        # namespace's init can't write the host's cgroupfs: then we write every pid.
        if mgr is not None and "user" not in nss:
            ctx.self_join = [os.path.join(d, name) for d, name in mgr.plan()
                             if name == "tasks"]
        ctx.mnt_mode = mnt_mode
        ctx.idmap_fds = ctx_idmap
        if mnt_mode == "joined":
            st = os.stat(rootfs)
            ctx.rootfs_id = (st.st_dev, st.st_ino)
        src_sock = -1
        if "user" in nss and config.get("mounts"):
            from runtime.linux import bindsrc
            if bindsrc.wanted(config["mounts"]):
                # Bind sources the user namespace's root may not reach: opened by us, as
                # host root, in the init's mount namespace when it asks (bindsrc.py).
                src_sock, ctx.mount_sock = bindsrc.socketpair()
                opened.extend([src_sock, ctx.mount_sock])
        user_fd = next((fd for t, fd in join_child if t == "user"), None)
        if user_fd is not None:  # the new namespaces must belong to it, as with runc
            pid, born_in = nsjoin.spawn_in_user_namespace(flags, user_fd), False
        else:
            pid, born_in = _spawn_init(flags, mgr)
        if pid == 0:
            sd.unlock()  # flock is per open file: our copy would block `start` forever
            parent_ch.close()
            init_main(ctx)  # never returns
        child_ch.close()
        if "user" in new_ns:
            _write_id_maps(pid, linux)
        if netdevs and not userns_first:  # the init's network namespace exists already
            attached = _attach_netdevs(pid, nss, sd.path, netdevs)
        hstate = hooks.hook_state(opts.cid, "creating", pid, bundle, config.get("annotations"))
        # The init sets up its mounts while we write its pid into what it does not join
        # itself (a pid written waits ~10 ms for an RCU grace period). It is in its cgroup
        # before we read any of its messages, hence before hooks, "ready" and exec. A cgroup
        # namespace must be unshared after our writes, so then the init waits for them.
        ours = [(d, name) for d, name in
                (mgr.plan(None, {mgr.unified_dir()} if born_in else set()) if mgr else [])
                if os.path.join(d, name) not in ctx.self_join]
        early = "cgroup" not in new_ns
        # The scheduler and memory policy must meet the cgroup (RT runtime, cpuset mems).
        early = not ours or (early and not ((config.get("process") or {}).get("scheduler")
                                            or linux.get("memoryPolicy")))
        if early:
            parent_ch.send({"type": "go", "state": hstate})
        for d, name in ours:
            enter_dir(d, name, pid)
        if not early:
            parent_ch.send({"type": "go", "state": hstate})
        while True:
            msg = parent_ch.recv(idle=lambda: _check_not_frozen(mgr))
            if msg is None:
                raise PyruncError(_died(pid))
            if msg["type"] == "error":
                raise PyruncError(msg["msg"])
            if netdevs and attached is None:  # the init has unshared its network namespace
                attached = _attach_netdevs(pid, nss, sd.path, netdevs)
            if msg["type"] == "hooks":
                # created: the spec's state after step 2 (crun agrees; runc says creating).
                # The cwd is the bundle, as runc's, so relative paths in hooks agree.
                rstate = dict(hstate, status="created")
                hooks.run("prestart", cfg_hooks.get("prestart", []), rstate, cwd=bundle)
                hooks.run("createRuntime", cfg_hooks.get("createRuntime", []), rstate,
                          cwd=bundle)
                parent_ch.send({"type": "hooks-done"})
            elif msg["type"] == "mount-sources":
                from runtime.linux import bindsrc
                bindsrc.serve(pid, config.get("mounts") or [], bundle, src_sock)
            elif msg["type"] == "ready":
                break
        info = proc_start_time(pid)
        if info is None:
            raise PyruncError(_died(pid))
        state = {
            "id": opts.cid, "pid": pid, "init_start_time": info[0], "bundle": bundle,
            "rootfs": rootfs, "created": now_rfc3339(), "owner": _owner(),
            "annotations": config.get("annotations") or {},
            "cgroup": mgr.to_state() if mgr else None,
            "hooks": {k: v for k, v in cfg_hooks.items() if k in ("poststart", "poststop")},
            # exec starts from the container's process and security settings, as runc does
            "linux": {k: v for k, v in linux.items() if k in ("seccomp", "resources",
                                                              "maskedPaths", "readonlyPaths",
                                                              "personality", "memoryPolicy")},
            "namespaces": sorted(new_ns | {t for t, _ in join_child}),
        }
        if attached is not None:
            state["netDevices"] = attached.to_state()
        if "process" in config:  # without one the container can be created, not started
            state["process"] = config["process"]
        sd.save(state)
        if opts.pid_file:
            atomic_write(os.path.abspath(opts.pid_file), str(pid).encode(), 0o644)
        return state
    except BaseException:
        if attached is not None:  # while the namespace lives: a veth dies with it
            from runtime.linux import netdev
            netdev.release(attached, warn)
        if pid > 0:
            _kill_and_reap(pid, mgr)
        if mgr is not None:
            try:
                mgr.discard()  # what we made only: the cgroupsPath may be another's
            except (OSError, PyruncError) as e:
                warn(f"cleanup: {e}")
        sd.remove()
        raise
    finally:
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass
        sd.unlock()


def _plan_netdevs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """linux.netDevices checked before anything is made ([] when there are none)."""
    if (config.get("linux") or {}).get("netDevices") is None:
        return []
    from runtime.linux import netdev
    nss = specmod.namespaces(config)
    own = "network" in nss and not specmod._is_host_netns(nss["network"])
    return netdev.plan(config, host_netns=not own)


def _attach_netdevs(pid: int, nss: dict[str, str], state_dir: str, devices):
    from runtime.linux import netdev
    return netdev.attach(pid, nss.get("network") or None, state_dir, devices)


def _warn_labels(config: dict[str, Any], warn) -> None:
    """linux.mountLabel on a host without SELinux: nothing could use the label, so, like
    crun, run without it and say so once (engines send labels only when SELinux is on).
    process.selinuxLabel is refused instead (spec.py): it asks for a confinement."""
    if (config.get("linux") or {}).get("mountLabel") and not specmod.selinux_enabled():
        warn("linux.mountLabel: ignored: SELinux is not enabled on this host")
    for dest in specmod.relative_mounts(config):
        warn(f"mounts: destination {dest!r} is not absolute: mounted at /{dest} "
             "(relative paths are relative to / since runtime-spec 1.1)")


def _new_time_namespace(offsets: dict[str, Any]) -> None:
    """unshare(CLONE_NEWTIME) here: our children (the init) start in it, with the offsets
    written before any process lives there, as the kernel requires."""
    if not os.path.exists("/proc/self/ns/time"):
        raise PyruncError("linux.namespaces: this kernel has no time namespace")
    sc.unshare(sc.CLONE_NEWTIME)
    lines = []
    for clock, off in offsets.items():
        if clock not in ("monotonic", "boottime"):
            raise PyruncError(f"linux.timeOffsets.{clock}: only monotonic and boottime exist")
        lines.append(f"{clock} {int(off.get('secs', 0))} {int(off.get('nanosecs', 0))}\n")
    if lines:
        try:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write("".join(lines))
        except OSError as e:
            raise PyruncError(f"linux.timeOffsets: {e.strerror}") from None


def _connect_console(path: str) -> int:
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise PyruncError(f"--console-socket {path}: {e.strerror}") from None
    return s.detach()


def _spawn_init(flags: int, mgr) -> tuple[int, bool]:
    """(pid, born in its cgroup2 directory?): clone3 into the cgroup when the kernel can,
    saving a migration; plain clone otherwise."""
    unified = mgr.unified_dir() if mgr is not None else None
    if unified:
        try:
            fd = os.open(unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                return sc.clone_into_cgroup(flags, fd), True
            except OSError:
                pass  # old kernel or refused: clone, then join through cgroup.procs
            finally:
                os.close(fd)  # in the parent and in the child alike
    return sc.clone(flags), False


def _cgroup(linux: dict[str, Any], cid: str, rootless: bool, warn=lambda msg: None):
    """Make the container's cgroup. Rootless, like runc: without write access and without
    resources to apply, run without one; asked for limits it cannot set, fail clearly.
    As runc: a cgroup that already holds processes gets a warning, a frozen one is
    refused (whatever enters it freezes), both before any setting is written."""
    mgr = new_manager(linux.get("cgroupsPath", ""), cid)
    refused = False
    try:
        mgr.create()
        refused = True
        mgr.check_reuse(warn)
        refused = False
        if linux.get("resources"):
            mgr.set(linux["resources"])
    except BaseException as e:
        try:  # nothing half-made, whatever the failure: remove the directories we made
            mgr.discard()
        except (OSError, PyruncError):
            pass
        if isinstance(e, PyruncError) and rootless and not refused \
                and not linux.get("resources"):
            return None
        raise
    return mgr


def _check_not_frozen(mgr) -> None:
    """Called while we wait for the init: a cgroup frozen under it would stall us forever."""
    if mgr is not None and mgr.would_freeze():
        raise PyruncError("container's cgroup unexpectedly frozen")


def _write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    if os.geteuid() != 0 and linux.get("gidMappings"):
        # An unprivileged writer may map its own gid only after giving up setgroups(2).
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for key, fname in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key, []))
        try:
            with open(f"/proc/{pid}/{fname}", "w") as f:
                f.write(lines)
        except OSError as e:
            raise PyruncError(f"linux.{key}: cannot write {fname}: {e.strerror}") from None


def _died(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        status = 0
    return f"container init (pid {pid}) exited before it was ready (status {status})"


def _kill_and_reap(pid: int, mgr=None) -> None:
    """SIGKILL the half-made init and reap it. A task frozen by the v1 freezer dies only
    once thawed: if it lingers, it is moved out of the container's cgroup first."""
    import time
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 1.0
    released = False
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        if time.monotonic() > deadline:
            if mgr is None:
                os.waitpid(pid, 0)
                return
            if released:
                return  # still frozen somehow: leave it to init(1) rather than hang
            mgr.release(pid)
            released = True
            deadline = time.monotonic() + 5.0
        time.sleep(0.002)


def _owner() -> str:
    return "" if os.geteuid() == 0 else str(os.geteuid())
