"""`imagetool exec`: a command in a running container, with docker's exit statuses (125
the tool failed, 126 cannot execute, 127 not found, else the command's) and, with -t,
TERM=xterm and the caller's window size, following its resizes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any

from imagetool.run import exitcodes
from imagetool.run.options import env_list
from imagetool.run.records import ContainerError, Records, status


def our_size() -> dict[str, int] | None:
    """{"height", "width"} of our terminal (stdin's, else stdout's), or None."""
    import fcntl
    import struct
    import termios
    for src in (0, 1):
        if os.isatty(src):
            with contextlib.suppress(OSError):
                rows, cols, _, _ = struct.unpack(
                    "HHHH", fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
                if rows and cols:
                    return {"height": rows, "width": cols}
            return None
    return None


def copy_winsize(master: int) -> None:
    """Give the pty `master` the size of our terminal (stdin's, else stdout's)."""
    import fcntl
    import termios
    for src in (0, 1):
        if os.isatty(src):
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            return


def cmd_exec(args: argparse.Namespace) -> int:
    try:
        return _exec(args)
    except (ContainerError, OSError, ValueError) as e:
        print(f"imagetool: exec: {e}", file=sys.stderr)
        return exitcodes.TOOL_FAILED
    except Exception as e:  # the runtime's errors: classified like docker's
        if getattr(args, "debug", False):
            raise
        print(f"imagetool: exec: {e}", file=sys.stderr)
        return exitcodes.for_start_error(str(e))


def _exec(args: argparse.Namespace) -> int:
    from imagetool import convert, layers
    from runtime.container import Container
    from runtime.exec import ExecOptions, exec_in, process_from_flags, wait_forwarding
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    st = status(recs.load(cid))
    if st == "paused":
        raise ContainerError(f"container {args.container} is paused, unpause it first")
    if st != "running":
        raise ContainerError(f"container {args.container} is not running")
    if not args.command:
        raise ContainerError("no command given (put it after the container)")
    c = Container(recs.runtime_root, cid)
    env = (["TERM=xterm"] if args.tty else []) + env_list(args)
    proc = process_from_flags(c.state["process"], list(args.command), env,
                              args.workdir, None, [], [], False, args.tty)
    if args.user:
        rootfs = c.state["rootfs"]
        u = convert.resolve_user(args.user, layers.read_file_in(rootfs, "/etc/passwd"),
                                 layers.read_file_in(rootfs, "/etc/group"))
        proc["user"] = {"uid": u["uid"], "gid": u["gid"]}
        if u.get("additionalGids"):
            proc["user"]["additionalGids"] = list(u["additionalGids"])
    if args.tty:  # sized before the command runs (the runtime applies it to the pty)
        size = our_size()
        if size is not None:
            proc["consoleSize"] = size
    if not args.interactive and not args.tty:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    pid, master = exec_in(c, ExecOptions(proc, detach=args.detach))
    if args.detach:
        return 0
    if master is not None:
        copy_winsize(master)

        def resized(_num: int, _frame: Any) -> None:
            copy_winsize(master)
        signal.signal(signal.SIGWINCH, resized)
    return wait_forwarding(pid, master)


def register(verb: Any) -> None:
    sp = verb("exec", cmd_exec, "run a command in a running container")
    sp.add_argument("-d", "--detach", action="store_true",
                    help="start the command and return (no output)")
    sp.add_argument("-i", "--interactive", action="store_true",
                    help="keep stdin open and pass it to the command")
    sp.add_argument("-t", "--tty", action="store_true",
                    help="give the command a pty (TERM=xterm, the caller's window size)")
    sp.add_argument("-e", "--env", action="append", metavar="K=V",
                    help="set an environment variable (repeatable; K alone copies ours)")
    sp.add_argument("--env-file", action="append", metavar="FILE",
                    help="read K=V lines from FILE (repeatable)")
    sp.add_argument("-u", "--user", help="user[:group] (names or ids) to run as")
    sp.add_argument("-w", "--workdir", help="working directory inside the container")
    sp.add_argument("container", help="container name or id (prefix)")
    sp.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
