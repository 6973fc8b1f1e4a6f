"""The monitor: one process per container, like conmon. `launch()` double-forks it (its own
session, reparented away from the command line), and it:

  - becomes a child subreaper, so everything the container leaves behind is reaped here;
  - creates the container with pyrunc's library (runtime.create) so the init is its child,
    its stdout/stderr are pipes the monitor reads into the json-file log (and, for a
    foreground `run`, also copies to the caller's stdout/stderr, which it inherited);
  - wires the network (network.py) between create and start, and runs the port proxies;
  - waits for the init, records the exit code, then cleans up: the runtime container and
    its cgroup, the veth and the address, the overlay rootfs; with --rm the record too;
  - reports to the caller over a status pipe: {"started": pid} or {"error": text}, then
    {"exit": code} at the end (a detached caller has closed its end by then);
  - with a restart policy (restart.py), starts the container again after it exited, with
    docker's doubling delay, until the policy says no or a user stopped it.

The runtime is used as a library, not through the pyrunc CLI: the init must be the
monitor's own child for the exit status, and create()'s stdio is simply the monitor's
fds 0-2 at that moment."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import time
import traceback
from typing import Any

from imagetool.run import events as event_log
from imagetool.run import logs, network, ports, restart
from imagetool.run.records import Records, now, proc_start

PR_SET_CHILD_SUBREAPER = 36


def launch(store_root: str, cid: str, foreground: bool, interactive: bool) -> int:
    """Start the monitor; return the read end of its status pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            main(store_root, cid, w, foreground, interactive)
        except BaseException:  # noqa: BLE001
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return r


def _send(fd: int | None, msg: dict[str, Any]) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(msg) + "\n").encode())


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
        return True
    except OSError:
        return False


def main(store_root: str, cid: str, status_w: int, foreground: bool,
         interactive: bool) -> None:
    recs = Records(store_root)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    out_fd = err_fd = None
    if foreground:
        out_fd, err_fd = os.dup(1), os.dup(2)
    in_fd = os.dup(0) if interactive else None
    devnull = os.open(os.devnull, os.O_RDWR)
    mlog = os.open(recs.path(cid, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                   0o600)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(mlog, 2)
    recs.update(cid, MonitorPid=os.getpid(), MonitorStart=proc_start(os.getpid()),
                ManualStop=False)
    delay = 0.1
    while True:
        code = _once(recs, store_root, cid, status_w, out_fd, err_fd, in_fd, devnull, mlog)
        # the caller's stdio and status pipe were for the first run only (docker's attached
        # client returns at the first exit too)
        if status_w is not None:
            with contextlib.suppress(OSError):
                os.close(status_w)
        out_fd = err_fd = in_fd = status_w = None  # type: ignore[assignment]
        if code is None or not restart.wanted(recs, cid, code):
            return
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
        try:
            if not restart.wanted(recs, cid, code):
                return
            restart.prepare(recs, cid)
        except Exception:  # noqa: BLE001 - the record is gone or the image: no restart
            traceback.print_exc()
            return


def _once(recs: Records, store_root: str, cid: str, status_w: int | None,
          out_fd: int | None, err_fd: int | None, in_fd: int | None, devnull: int,
          mlog: int) -> int | None:
    """Create, start and watch the container once; its exit code, or None when it did not
    start (reported on status_w)."""
    rec = recs.load(cid)
    host = rec["HostConfig"]
    tty = bool((rec.get("Config") or {}).get("Tty"))
    open_stdin = bool((rec.get("Config") or {}).get("OpenStdin")) or in_fd is not None
    mode = host.get("NetworkMode", "bridge")
    slirp = _slirp(mode)  # user-mode networking in place of a bridge (rootless.slirp)
    if slirp is not None:
        mode = "none"
    user_net = mode if mode not in ("bridge", "host", "none") else None
    bridged = mode == "bridge" or user_net is not None
    bundle = recs.path(cid, "bundle")
    proxies: list[ports.Proxy | ports.UdpProxy] = []
    info: dict[str, Any] | None = None
    created = False
    o_r = e_r = master = i_w = -1
    console: _Console | None = None
    try:
        from runtime.create import CreateOptions, create
        if bridged:
            network.preload()
            info = network.allocate(store_root, cid, user_net)
            if os.path.exists(recs.path(cid, "hosts")):
                from imagetool.run import etcfiles
                etcfiles.add_address(recs.path(cid), rec["Config"].get("Hostname") or cid[:12],
                                     info["address"])
            for p in host.get("PortBindings") or []:
                proxies.append(ports.proxy_for(p, info["address"]))
        if tty:
            console = _Console()
            try:
                state = create(CreateOptions(recs.runtime_root, cid, bundle,
                                             console_socket=console.path, rootless=_rl()))
                created = True
                master = console.receive()
            finally:
                console.close()
                if in_fd is not None and master < 0:
                    os.close(in_fd)
                    in_fd = None
            _copy_winsize(out_fd, master)
        else:
            o_r, o_w = os.pipe()
            e_r, e_w = os.pipe()
            i_r = devnull
            if open_stdin:  # a pipe of ours: fed by the caller and by attach clients
                i_r, i_w = os.pipe()
                os.set_inheritable(i_w, False)
            os.dup2(i_r, 0)
            os.dup2(o_w, 1)
            os.dup2(e_w, 2)
            try:
                state = create(CreateOptions(recs.runtime_root, cid, bundle, rootless=_rl()))
                created = True
            finally:
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.dup2(mlog, 2)
                os.close(o_w)
                os.close(e_w)
                if i_r != devnull:
                    os.close(i_r)
        pid = state["pid"]
        if bridged:
            assert info is not None
            network.setup_bridge_side(info, cid, pid)
            network.setup_container_side(info, cid, pid)
        # --network none (and slirp4netns): lo is up already, the runtime's init brings it up
        # in every network namespace it makes (as runc does)
        if slirp is not None:
            slirp.start(pid, host.get("PortBindings") or [])
        if user_net is not None and info is not None:  # names known before it runs
            from imagetool.run import usernet
            with recs.lock():
                r = recs.load(cid)
                r["NetworkSettings"] = {"IPAddress": info["address"]}
                recs.save(r)
            usernet.update_hosts(store_root, user_net, joining=cid)
        from runtime.container import Container
        Container(recs.runtime_root, cid).start(lambda m: None)
        for p in proxies:
            p.start()
        net = {}
        if info is not None:
            net = {"IPAddress": info["address"], "IPPrefixLen": info["prefixlen"],
                   "Gateway": info["gateway"], "Bridge": info["bridge"]}
        with recs.lock():
            rec = recs.load(cid)
            rec["State"].update(Status="running", Running=True, Pid=pid, StartedAt=now())
            rec["NetworkSettings"] = dict(net, Ports=[p.port for p in proxies] +
                                          (slirp.ports if slirp is not None else []))
            recs.save(rec)
        event_log.record(store_root, "start", rec)
    except BaseException as e:  # noqa: BLE001 - reported to the caller, then cleaned up
        traceback.print_exc()
        _send(status_w, {"error": str(e) or type(e).__name__})
        for p in proxies:
            p.close()
        if slirp is not None:
            slirp.close()
        for fd in (master, in_fd, i_w):
            if fd is not None and fd >= 0:
                os.close(fd)
        _cleanup(recs, store_root, cid, created, info, remove_bundle=False, net=user_net)
        return None
    _send(status_w, {"started": pid})
    if tty:  # one stream: the pty's output is the container's stdout, as in docker
        outputs = {master: ("stdout", out_fd)}
        if err_fd is not None:
            os.close(err_fd)
            err_fd = None
    else:
        outputs = {o_r: ("stdout", out_fd), e_r: ("stderr", err_fd)}
    # the relay owns its target: the stdin pipe's write end, or a dup of the pty master
    target = (os.dup(master) if tty else i_w) if open_stdin else -1
    relay = None  # the caller's EOF ends a pipe stdin (docker's StdinOnce), never a pty's
    if target >= 0:
        relay = (target, in_fd, recs.path(cid), not tty and in_fd is not None)
    elif in_fd is not None:
        os.close(in_fd)
    code = _watch(pid, outputs, recs.path(cid, f"{cid}-json.log"), out_fd, err_fd,
                  relay, master if tty else None)
    for p in proxies:
        p.close()
    if slirp is not None:  # told to end now, closed after the cleanup (Slirp.close): its
        slirp.stop()       # exit (the tap's close waits an RCU grace period) overlaps that
    if not host.get("AutoRemove"):
        try:
            from imagetool.run.bundles import keep_upper
            keep_upper(recs, cid)
        except Exception:  # noqa: BLE001 - its changes are lost, the rest is cleaned up
            traceback.print_exc()
    event_log.record(store_root, "die", recs.update(cid, Status="exited", Running=False,
                                                    ExitCode=code, FinishedAt=now()),
                     exitCode=str(code))
    _cleanup(recs, store_root, cid, True, info, remove_bundle=True, net=user_net)
    if slirp is not None:
        slirp.close()
    with contextlib.suppress(Exception):  # networks `network connect` added while it ran
        from imagetool.run import netconnect
        netconnect.drop_all(store_root, recs, cid)
    if user_net is not None:
        with contextlib.suppress(Exception):
            from imagetool.run import usernet
            usernet.update_hosts(store_root, user_net)
    if host.get("AutoRemove"):
        if host.get("Volumes"):
            with contextlib.suppress(Exception):
                from imagetool.run import volumes
                volumes.remove_anonymous(store_root, recs.load(cid))
        with contextlib.suppress(Exception):
            event_log.record(store_root, "destroy", recs.load(cid))
        recs.remove(cid)
    else:
        recs.update(cid, Pid=0)
    _send(status_w, {"exit": code})
    return code


def _cleanup(recs: Records, store_root: str, cid: str, created: bool,
             info: dict[str, Any] | None, remove_bundle: bool, net: str | None = None) -> None:
    if created:
        try:
            from runtime.container import Container
            Container(recs.runtime_root, cid).delete(True, lambda m: None)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    if info is not None:
        network.teardown(cid)
        with contextlib.suppress(Exception):
            network.release(store_root, cid, net)
    if remove_bundle:
        try:
            from imagetool import bundle
            bundle.remove(recs.path(cid, "bundle"))
        except Exception:  # noqa: BLE001
            traceback.print_exc()


class _Console:
    """A private console socket (a 0700 temp directory of its own) for pyrunc's
    --console-socket protocol: the init connects during create() and sends the pty master."""

    def __init__(self) -> None:
        import socket
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="imagetool-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(30)

    def receive(self) -> int:
        from runtime.console import recv_fd
        conn, _ = self.sock.accept()
        try:
            conn.settimeout(30)
            _name, master = recv_fd(conn)
        finally:
            conn.close()
        os.set_inheritable(master, False)
        return master

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)


def _copy_winsize(src: int | None, master: int) -> None:
    """Give the container's pty the size of the caller's terminal, when there is one."""
    import fcntl
    import termios
    if src is None or not os.isatty(src):
        return
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def _winch_pipe() -> tuple[int, int]:
    """A pipe that becomes readable on SIGWINCH: `run -t` relays its terminal's resizes to
    us, and the select loop then copies the new size to the container's pty."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGWINCH, lambda *_: None)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r, w


def _watch(pid: int, outputs: dict[int, tuple[str, int | None]], log_path: str,
           out_fd: int | None, err_fd: int | None, relay_args: tuple | None = None,
           master: int | None = None) -> int:
    """Log the container's output (`outputs`: fd -> (stream name, fd to copy it to or
    None)) until the init is reaped and those fds are closed; reap every other orphan on
    the way (we are the subreaper). With `relay_args` (stdin_relay.InputRelay's target,
    caller fd, directory, once), copy the caller's stdin and attach clients' input to the
    container's stdin, never blocking on it. Returns the exit code."""
    from imagetool.run.stdin_relay import InputRelay
    lw = logs.LogWriter(log_path)
    sel = selectors.DefaultSelector()
    streams = dict(outputs)
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    if master is not None:
        os.set_blocking(master, False)
    relay = None
    if relay_args is not None:
        try:
            relay = InputRelay(sel, *relay_args)
        except OSError:  # no attach socket: the container runs without input
            traceback.print_exc()
            for fd in relay_args[:2]:
                if fd is not None:
                    os.close(fd)
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ)
    winch = _winch_pipe() if master is not None and out_fd is not None else None
    if winch is not None:
        sel.register(winch[0], selectors.EVENT_READ)
        _copy_winsize(out_fd, master)  # type: ignore[arg-type]  # a resize since create
    code: int | None = None
    grace = None

    while True:
        for key, events in sel.select(timeout=0.5):
            fd = key.fd
            if fd == pidfd:
                sel.unregister(pidfd)
                continue
            if winch is not None and fd == winch[0]:  # the caller's terminal was resized
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 512)
                if master in streams:
                    _copy_winsize(out_fd, master)  # type: ignore[arg-type]
                continue
            if relay is not None and fd in relay.fds():
                relay.handle(fd, events)
                continue
            if fd not in streams:  # closed earlier in this round
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the pty's last slave is closed
                data = b""
            if not data:
                sel.unregister(fd)
                os.close(fd)
                del streams[fd]
                if fd == master and relay is not None:
                    relay.close()
                continue
            name, copy = streams[fd]
            lw.write(name, data)
            if copy is not None and not _write_all(copy, data):
                streams[fd] = (name, None)
        while True:
            try:
                got, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if got == 0:
                break
            if got == pid:
                code = os.waitstatus_to_exitcode(st)
                if code < 0:
                    code = 128 - code
        if code is not None:
            if not streams:
                break
            if grace is None:
                grace = time.monotonic() + 5
            elif time.monotonic() > grace:
                break
    for fd in list(streams):
        os.close(fd)
    if relay is not None:
        relay.close()
    os.close(pidfd)
    if winch is not None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        for fd in winch:
            os.close(fd)
    lw.close()
    for ofd in (out_fd, err_fd):
        if ofd is not None:
            os.close(ofd)
    assert code is not None  # the loop ends only once the init was reaped
    return code


def _rl() -> bool | None:
    """Rootless inside imagetool's user namespace (uid 0 there, no host cgroups)."""
    from imagetool.rootless.paths import rootless
    return True if rootless() else None


def _slirp(mode: str) -> Any:
    """A rootless.slirp.Slirp when this container's network is slirp4netns, else None."""
    from imagetool.rootless import slirp
    return slirp.Slirp() if slirp.wanted(mode) else None
