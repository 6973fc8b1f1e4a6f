"""`run`: create + start + wait + delete in one process, like `runc run`.

The init is our own child here, so we reap it ourselves and forward the signals we get.
With process.terminal and no --console-socket we receive the pty master on a private socket
and copy between it and our stdio.
"""

from __future__ import annotations

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os

from runtime.container import Container
from runtime.create import CreateOptions, create
from runtime.errors import PyruncError
from runtime.log import Logger, log_init_started

_FORWARD = [s for s in sorted(signal.valid_signals())
            if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGWINCH)]


def run(opts: CreateOptions, detach: bool, keep: bool, log: Logger) -> int:
    from runtime import spec as specmod
    proc = specmod.load(os.path.abspath(opts.bundle)).get("process") or {}
    terminal = bool(proc.get("terminal"))
    listener = tmpdir = None
    if terminal and not opts.console_socket:
        if detach:
            raise PyruncError("process.terminal with --detach needs --console-socket")
        import socket
        import tempfile
        tmpdir = tempfile.mkdtemp(prefix="pyrunc-console-")
        opts.console_socket = os.path.join(tmpdir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(opts.console_socket)
        listener.listen(1)
    try:
        state = create(opts, warn=log.warn)
        log.debug("run: init process created", id=opts.cid, pid=state["pid"])
        log_init_started(log, state["pid"])
        c = Container(opts.root, opts.cid)
        master = None
        if listener is not None:
            from runtime.console import recv_fd
            conn, _ = listener.accept()
            _name, master = recv_fd(conn)
            conn.close()
            _copy_window_size(master, only_if_unset=True)
        try:
            c.start(log.warn)
        except PyruncError:
            c.delete(True, log.warn)
            raise
        log.debug("run: container process released", id=opts.cid)
        if detach:
            return 0
        pid = state["pid"]
        for s in _FORWARD:
            try:
                signal.signal(s, lambda num, _f: _forward(pid, num))
            except (OSError, ValueError):
                pass
        status = _proxy_and_wait(pid, master) if master is not None else _wait(pid)
        log.debug("run: process exited", pid=pid, status=status)
        if not keep:
            Container(opts.root, opts.cid).delete(True, log.warn)
        return status
    finally:
        if listener is not None:
            listener.close()
        if tmpdir:
            for name in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, name))
            os.rmdir(tmpdir)


def _forward(pid: int, num: int) -> None:
    try:
        os.kill(pid, num)
    except ProcessLookupError:
        pass


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
            128 + os.WTERMSIG(status)


def _copy_window_size(master: int, only_if_unset: bool = False) -> None:
    """Give the container's pty our terminal's size, as runc does (process.consoleSize, when
    the config has one, already sized it: `only_if_unset` leaves that alone)."""
    if not os.isatty(0):
        return
    import fcntl
    import termios
    try:
        if only_if_unset:
            cur = fcntl.ioctl(master, termios.TIOCGWINSZ, b"\0" * 8)
            if cur[:4] != b"\0" * 4:
                return
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _proxy_and_wait(pid: int, master: int) -> int:
    """Copy stdin -> pty and pty -> stdout until the pty closes, then reap; the caller's
    window size follows resizes (SIGWINCH)."""
    import select
    import termios
    import tty
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        signal.signal(signal.SIGWINCH, lambda _n, _f: _copy_window_size(master))
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    return _wait(pid)
