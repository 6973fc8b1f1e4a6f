"""`run`, `create` and `start`: the command line over imagetool.run.launch (flags, the
attached terminal, printing). `run` exits with docker's statuses: 125 the tool failed, 126
the command cannot be executed, 127 it was not found, else the container's own."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
from typing import Any

from imagetool.run import exitcodes, launch, lifecycle
from imagetool.run.options import env_list, resources
from imagetool.run.records import ContainerError, Records, monitor_alive, status


def _pull_notice(ref: str) -> None:
    print(f"Unable to find image '{ref}' locally", file=sys.stderr)


def _options(args: argparse.Namespace) -> launch.Options:
    """The new container's Config and HostConfig, from run/create's flags."""
    from imagetool.run import ports
    pbind = [ports.parse(p) for p in args.publish or []]
    if args.network not in ("bridge", "host", "none", "slirp4netns"):
        from imagetool.run import usernet
        usernet.load(args.root, args.network)  # a user network: it must exist
    for item in args.add_host or []:
        name, sep, addr = item.partition(":")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ContainerError(f"--add-host {item}: want HOST:IP")
    for d in args.dns or []:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise ContainerError(f"--dns {d}: not an IP address") from None
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    from imagetool.run import mountspec, restart
    mounts, vols = mountspec.parse(args)
    config = {"Env": env_list(args), "Cmd": list(args.command) if args.command else None,
              "Entrypoint": entrypoint, "User": args.user, "WorkingDir": args.workdir,
              "Hostname": args.hostname, "Tty": args.tty, "OpenStdin": args.interactive}
    host = {"AutoRemove": bool(getattr(args, "rm", False)), "NetworkMode": args.network,
            "PortBindings": pbind, "Binds": args.volume or [],
            "OciMounts": mounts, "Volumes": vols,
            "ReadonlyRootfs": args.read_only, "Resources": resources(args),
            "RestartPolicy": restart.parse(args.restart),
            "ExtraHosts": args.add_host or [], "Dns": args.dns or []}
    if host["AutoRemove"] and host["RestartPolicy"]["Name"] != "no":
        raise ContainerError("conflicting options: --restart and --rm")
    return launch.Options(config, host, args.name, bool(args.publish_all))


def _tool_failed(args: argparse.Namespace, verb: str, e: Exception) -> int:
    """Whatever failed before the container ran is the tool's: one line, status 125."""
    if getattr(args, "debug", False):
        raise e
    print(f"imagetool: {verb}: {e}", file=sys.stderr)
    return exitcodes.TOOL_FAILED


def cmd_create(args: argparse.Namespace) -> int:
    from imagetool.store import Store
    try:
        c = launch.create(Store(args.root), args.image, _options(args), _pull_notice)
    except Exception as e:
        return _tool_failed(args, "create", e)
    print(c.id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from imagetool.store import Store
    saved: list[Any] = []

    def terminal(c: launch.Container) -> None:
        saved.append(_attach_terminal(c.records, c.id, args.detach, args.interactive,
                                      args.tty))
    try:
        opts = _options(args)
        sys.stdout.flush()
        sys.stderr.flush()
        c = launch.launch(Store(args.root), args.image, opts, foreground=not args.detach,
                          interactive=args.interactive and not args.detach,
                          on_pull=_pull_notice, before_start=terminal)
    except lifecycle.StartError as e:
        _restore_terminal(saved[0] if saved else None)
        print(f"imagetool: run: {e}", file=sys.stderr)
        return e.code
    except Exception as e:
        _restore_terminal(saved[0] if saved else None)
        return _tool_failed(args, "run", e)
    except BaseException:
        _restore_terminal(saved[0] if saved else None)
        raise
    return _attached(c, args.detach, False, saved[0])


def cmd_start(args: argparse.Namespace) -> int:
    from imagetool.store import Store
    store, recs = Store(args.root), Records(args.root)
    rc = 0
    for name in args.containers:
        try:
            cid = recs.resolve(name)
            rec = recs.load(cid)
            st = status(rec)
            if st in ("running", "paused") and monitor_alive(rec):
                if not args.attach:
                    print(name)
                continue
            if args.attach:
                return attach_run(store, recs, cid, False, args.interactive,
                                  bool(rec["Config"].get("Tty")), remove_on_error=False)
            attach_run(store, recs, cid, True, False, bool(rec["Config"].get("Tty")),
                       remove_on_error=False, quiet=True)
            print(name)
        except lifecycle.StartError as e:
            print(f"imagetool: start: {e}", file=sys.stderr)
            rc = e.code
        except ContainerError as e:
            print(f"imagetool: start: {e}", file=sys.stderr)
            rc = 1
    return rc


def attach_run(store: Any, recs: Records, cid: str, detach: bool, interactive: bool,
               tty: bool, remove_on_error: bool, quiet: bool = False) -> int:
    """Start the container through its monitor; detached, print the id and return 0, else
    relay the terminal and signals and return the container's exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = _attach_terminal(recs, cid, detach, interactive, tty)
    try:
        # -di/-dit: the container's stdin stays open (attach feeds it); ours is not read
        c = launch.start(store, recs, cid, foreground=not detach,
                         interactive=interactive and not detach,
                         remove_on_error=remove_on_error)
    except BaseException:
        _restore_terminal(saved)
        raise
    return _attached(c, detach, quiet, saved)


def _attach_terminal(recs: Records, cid: str, detach: bool, interactive: bool,
                     tty: bool) -> Any:
    """Before the start: relay window resizes, put our terminal in raw mode when attached
    to a pty with stdin; returns what _restore_terminal() puts back."""
    if tty and not detach:
        # Relay resizes from now on: one before the monitor has copied the size to the
        # container's pty is seen by that copy, one after reaches the monitor.
        def resized(_num: int, _frame: Any) -> None:
            with contextlib.suppress(Exception):
                rec = recs.load(cid)
                pid = int((rec.get("State") or {}).get("MonitorPid") or 0)
                if pid > 0 and monitor_alive(rec):
                    os.kill(pid, signal.SIGWINCH)
        signal.signal(signal.SIGWINCH, resized)
    # raw before the container can print or read anything, restored on every way out
    return _raw_terminal() if tty and interactive and not detach else None


def _attached(c: launch.Container, detach: bool, quiet: bool, saved: Any) -> int:
    try:
        if detach:
            if not quiet:
                print(c.id)
            return 0
        return wait_exit_message(c.records, c.id, c.status_fd, c.rest)
    finally:
        os.close(c.status_fd)
        _restore_terminal(saved)


def wait_exit_message(recs: Records, cid: str, fd: int, rest: bytes) -> int:
    """Forward INT/TERM/HUP to the container until the monitor reports its exit."""
    from imagetool.run import control

    def forward(num: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):
            control.kill_runtime(recs, cid, num)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    while b"\n" not in rest:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return exitcodes.TOOL_FAILED
        rest += chunk
    return int(json.loads(rest.partition(b"\n")[0]).get("exit", exitcodes.TOOL_FAILED))


def _raw_terminal() -> Any:
    """Put our stdin, when it is a terminal, in raw mode (keys, ^C included, go to the
    container's pty, whose own line discipline handles them); return what to restore."""
    import termios
    import tty
    if not os.isatty(0):
        return None
    try:
        saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSADRAIN)
    except termios.error:
        return None
    return saved


def _restore_terminal(saved: Any) -> None:
    if saved is not None:
        import termios
        with contextlib.suppress(termios.error):
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def register(verb: Any) -> None:
    sp = verb("run", cmd_run, "run a command in a new container (a monitor process keeps it)")
    add_create_flags(sp)
    sp.add_argument("-d", "--detach", action="store_true", help="print the id and return")
    sp.add_argument("--rm", action="store_true", help="remove the container when it exits")
    sp.add_argument("image", metavar="IMAGE", help="image name or ID (pulled when missing)")
    sp.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                    help="command and arguments (default: the image's)")

    sp = verb("create", cmd_create, "create a container (start it with `start`)")
    add_create_flags(sp)
    sp.add_argument("image", metavar="IMAGE", help="image name or ID (pulled when missing)")
    sp.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                    help="command and arguments (default: the image's)")

    sp = verb("start", cmd_start, "start created or stopped containers")
    sp.add_argument("-a", "--attach", action="store_true",
                    help="stay attached to its output and return its exit status")
    sp.add_argument("-i", "--interactive", action="store_true", help="attach stdin too")
    sp.add_argument("containers", nargs="+", metavar="CONTAINER", help="names or ids")


def add_create_flags(sp: argparse.ArgumentParser) -> None:
    """The flags `run` and `create` share."""
    sp.add_argument("--name", help="the container's name (default: a random one)")
    sp.add_argument("-e", "--env", action="append", metavar="K=V",
                    help="set an environment variable (repeatable; K alone copies ours)")
    sp.add_argument("--env-file", action="append", metavar="FILE",
                    help="read K=V lines from FILE (repeatable)")
    sp.add_argument("-p", "--publish", action="append", metavar="[HOSTIP:]HOST:CTR[/proto]",
                    help="publish a container port on the host (repeatable)")
    sp.add_argument("-v", "--volume", action="append", metavar="HOST|NAME:CTR[:ro]",
                    help="bind-mount a host path, mount a named volume, or (-v /CTR) an "
                    "anonymous one (repeatable)")
    sp.add_argument("--mount", action="append", metavar="type=bind|volume|tmpfs,...",
                    help="source=,target=,readonly,tmpfs-size=,tmpfs-mode= (repeatable)")
    sp.add_argument("--tmpfs", action="append", metavar="/CTR[:OPTIONS]",
                    help="mount a tmpfs (options as mount(8): size=64m,mode=1777)")
    sp.add_argument("-P", "--publish-all", action="store_true",
                    help="publish every port the image EXPOSEs on a free host port")
    sp.add_argument("-w", "--workdir", help="working directory inside the container")
    sp.add_argument("-u", "--user", help="user[:group] (names or ids) to run as")
    sp.add_argument("--entrypoint", help="override the image's entrypoint (\"\" clears it)")
    sp.add_argument("--hostname", help="the container's hostname (default: its short id)")
    sp.add_argument("--memory", "-m", help="memory limit, e.g. 64m or 1g")
    sp.add_argument("--cpus", help="CPU quota in CPUs, e.g. 0.5")
    sp.add_argument("--pids-limit", type=int, metavar="N", help="at most N processes")
    sp.add_argument("--read-only", action="store_true", help="mount the rootfs read-only")
    sp.add_argument("--network", "--net", default="bridge", metavar="NETWORK",
                    help="bridge (default): own address on the store's bridge; host: the "
                    "host's network; none: loopback only; or a user network (network "
                    "create): containers on it find each other by name")
    sp.add_argument("--add-host", action="append", metavar="HOST:IP",
                    help="an /etc/hosts entry (repeatable)")
    sp.add_argument("--dns", action="append", metavar="IP",
                    help="a nameserver for /etc/resolv.conf instead of the host's")
    sp.add_argument("-t", "--tty", action="store_true",
                    help="give the container a pty (its output is logged as stdout)")
    sp.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    sp.add_argument("--restart", metavar="POLICY", help="no (default), on-failure[:N], "
                    "always, unless-stopped: the monitor starts it again after it exits")
