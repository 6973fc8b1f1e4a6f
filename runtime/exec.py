"""`exec`: run another process inside a running container.

An intermediate child joins every namespace of the container's init that is not ours,
however the container got it: its own, joined by path or inherited (after setns(pid) and
setns(time) only children land there), then clones the real process with CLONE_PARENT so
that `pyrunc exec` itself is its parent and can wait for it. `pyrunc exec` puts that process
into the container's cgroup (or an --cgroup sub-cgroup) before letting it go on; neither it
nor the intermediate ever enters the cgroup, so a frozen one can't freeze the runtime.
That process gets the same setup as the init (rlimits, user, capabilities, no_new_privs,
non-dumpable until execve) and reports failures over a pipe that execve closes.
"""

from __future__ import annotations

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os

from runtime import finalize, jsonio
from runtime.cgroups import load_manager
from runtime.container import Container
from runtime.errors import PyruncError
from runtime.linux import nsjoin
from runtime.linux import process_setup as ps
from runtime.linux import syscalls as sc
from runtime.spec import check_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

CLONE_PARENT = 0x00008000


class ExecOptions:
    def __init__(self, process: dict[str, Any], detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None,
                 preserve_fds: int = 0, ignore_paused: bool = False,
                 cgroup: dict[str, str] | None = None) -> None:
        self.process = process
        self.detach = detach
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.ignore_paused = ignore_paused
        self.cgroup = cgroup or {}  # exec --cgroup: controller ("" for all) -> sub-cgroup


def process_from_flags(base: dict[str, Any], args: list[str], env: list[str],
                       cwd: str | None, user: str | None, additional_gids: list[int],
                       caps: list[str], no_new_privs: bool, tty: bool) -> dict[str, Any]:
    """runc's reading of exec's flags: the container's process, with these changes."""
    proc = jsonio.loads(jsonio.dumps(base))
    if not args:
        raise PyruncError("exec: no command given (pass it after the id, or --process FILE)")
    proc["args"] = args
    proc["env"] = list(proc.get("env", [])) + env
    proc["terminal"] = tty
    if cwd:
        proc["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise PyruncError(f"exec --user {user!r}: must be uid[:gid] numbers") from None
    if additional_gids:
        proc.setdefault("user", {})["additionalGids"] = additional_gids
    if caps:
        c = proc.setdefault("capabilities", {})
        for s in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            if s != "inheritable" or s in c:
                c[s] = list(dict.fromkeys(list(c.get(s, [])) + caps))
    if no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def exec_in(c: Container, opts: ExecOptions) -> tuple[int, int | None]:
    """Start the process; return (pid, master fd of a pty we must proxy, or None)."""
    st = c.status()
    if st == "stopped":
        raise PyruncError(f"cannot exec in a stopped container {c.id}: container not running")
    if st == "paused" and not opts.ignore_paused:
        raise PyruncError("cannot exec in a paused container (use --ignore-paused to "
                          "override)")
    proc = opts.process
    check_process(proc, "process")
    terminal = bool(proc.get("terminal"))
    listener: socket.socket | None = None
    tmpdir = ""
    if terminal and not opts.console_socket:
        if opts.detach:
            raise PyruncError("exec --tty with --detach needs --console-socket")
        listener, tmpdir, opts.console_socket = _private_console_socket()
    if terminal:
        import runtime.console  # noqa: F401 - needed after setns(mnt), when imports fail
    # the container's personality and memory policy reach exec'd processes too
    linux = {k: v for k, v in (c.state.get("linux") or {}).items()
             if k in ("personality", "memoryPolicy")}
    ps.preload_attrs(proc, linux)
    sec = None
    seccomp_cfg = (c.state.get("linux") or {}).get("seccomp")
    if seccomp_cfg is not None:
        # runc gives exec'd processes the container's filter; built here, on the host side,
        # it is inherited by the forked children and loaded last.
        from runtime.linux import seccomp
        st_now = dict(c.public(), status="running")
        sec = seccomp.prepare(seccomp_cfg, "linux.seccomp", proc, st_now)
    fds: list[tuple[str, int, int]] = []
    console_fd = None
    mgr = load_manager(c.state)
    if mgr is not None and not opts.ignore_paused and mgr.would_freeze():
        # frozen some other way (the cgroup2 freezer, a frozen parent): the process would
        # wait there for a thaw, as in a paused container
        raise PyruncError("cannot exec in a paused container (use --ignore-paused to "
                          "override)")
    if opts.cgroup:
        if mgr is None:
            raise PyruncError(f"--cgroup: container {c.id} has no cgroup")
        mgr.plan(opts.cgroup)  # a bad --cgroup fails before anything starts
    rfd, wfd = os.pipe()
    go_r, go_w = os.pipe()  # the process waits on it until it is in its cgroup
    try:
        fds = nsjoin.open_namespaces(c.pid)
        if c.status() == "stopped":  # the pid was the init's when we opened its namespaces
            raise PyruncError(f"cannot exec in a stopped container {c.id}: container not running")
        if opts.console_socket:
            from runtime.create import _connect_console
            console_fd = _connect_console(opts.console_socket)
        pid_a = os.fork()
        if pid_a == 0:
            os.close(go_w)
            _intermediate(fds, wfd, rfd, go_r, proc, console_fd, opts.preserve_fds, sec,
                          linux)
        os.close(wfd)
        os.close(go_r)
        wfd = go_r = -1
        os.waitpid(pid_a, 0)
        pid = _read_pid(rfd)
        try:
            if mgr is not None:
                # We put the process there, never ourselves (nor the intermediate): a frozen
                # cgroup (exec --ignore-paused) freezes only the container's process.
                mgr.enter(pid, sub=opts.cgroup)
            ps.exec_affinity(pid, proc, "final")  # in its cgroup now
        except BaseException:
            _kill_quietly(pid)
            raise
        os.write(go_w, b"g")
        os.close(go_w)
        go_w = -1
        _await_exec(rfd, pid)
        master = None
        if listener is not None:
            from runtime.console import recv_fd
            conn, _ = listener.accept()
            master = recv_fd(conn)[1]
            conn.close()
        if opts.pid_file:
            from runtime.state import atomic_write
            atomic_write(os.path.abspath(opts.pid_file), str(pid).encode(), 0o644)
        return pid, master
    finally:
        nsjoin.close_all(fds)
        for fd in (rfd, wfd, go_r, go_w, console_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        if listener is not None:
            listener.close()
            os.unlink(os.path.join(tmpdir, "console.sock"))
            os.rmdir(tmpdir)


def _private_console_socket() -> tuple[socket.socket, str, str]:
    """A listening socket in a fresh private directory: (listener, directory, its path)."""
    import socket
    import tempfile
    tmpdir = tempfile.mkdtemp(prefix="pyrunc-console-")
    path = os.path.join(tmpdir, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    return listener, tmpdir, path


def _read_pid(rfd: int) -> int:
    """The intermediate's one line: the process's pid, or why there is none."""
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        buf += chunk
    msg = jsonio.loads(buf.split(b"\n", 1)[0]) if buf.strip() else {}
    if "error" in msg:
        raise PyruncError(msg["error"])
    if not msg.get("pid"):
        raise PyruncError("exec: the process died before it was started")
    return msg["pid"]


def _await_exec(rfd: int, pid: int) -> None:
    """EOF (execve closed the pipe) or the process's error."""
    buf = b""
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        buf += chunk
    for line in buf.splitlines():
        msg = jsonio.loads(line)
        if "error" in msg:
            _reap_quietly(pid)
            raise PyruncError(msg["error"])


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap_quietly(pid)


def _reap_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _report(wfd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(wfd, jsonio.dumps(msg).encode() + b"\n")
    except OSError:
        pass


def _error_text(e: BaseException) -> str:
    return str(e) if isinstance(e, PyruncError) else f"{type(e).__name__}: {e}"


def _intermediate(fds, wfd, rfd, go_r, proc, console_fd, preserve_fds, sec, linux) -> None:
    """In the forked child: the namespaces, then clone the process. No cgroup: the parent
    puts the process there (we are the runtime's, not the container's)."""
    try:
        os.close(rfd)
        ps.exec_affinity(0, proc, "initial")  # inherited by the process until "final"
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        nsjoin.join(fds)
        pid = sc.clone(CLONE_PARENT)
        if pid == 0:
            _process(wfd, go_r, proc, console_fd, preserve_fds, sec, linux)
        _report(wfd, {"pid": pid})
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent
        _report(wfd, {"error": f"exec: {_error_text(e)}"})
        os._exit(1)
    os._exit(0)


def _process(wfd: int, go_r: int, proc: dict[str, Any], console_fd: int | None,
             preserve_fds: int, sec, linux: dict[str, Any]) -> None:
    """The exec'd process, in every namespace of the container; ends in execve. It waits
    until the parent has put it in the container's cgroup."""
    try:
        if not os.read(go_r, 1):
            os._exit(1)  # the parent gave up (it reports why)
        os.close(go_r)
        if console_fd is not None:
            os.setsid()  # a session of its own, for the console to become its terminal
        # no /dev/console bind: the container's mounts are the init's
        program, env = finalize.prepare(proc, linux, sec, console_fd=console_fd,
                                        console_bind=False, oom_score_adj=True)
        # wfd is O_CLOEXEC: execve closes it, which tells the parent the process runs
        finalize.launch(program, proc["args"], env, preserve_fds, keep=(wfd,))
    except BaseException as e:  # noqa: BLE001
        _report(wfd, {"error": _error_text(e)})
    os._exit(127)


def wait_forwarding(pid: int, master: int | None) -> int:
    """Wait for the exec'd process (our child through CLONE_PARENT), forwarding signals."""
    from runtime.run import _FORWARD, _forward, _proxy_and_wait, _wait
    for s in _FORWARD:
        try:
            signal.signal(s, lambda num, _f: _forward(pid, num))
        except (OSError, ValueError):
            pass
    return _proxy_and_wait(pid, master) if master is not None else _wait(pid)
