"""`run`, `create` and `start`: the command line over imagetool.run.lifecycle. `run`
exits with docker's statuses: 125 the tool failed, 126 the command cannot be executed,
127 it was not found, else the container's own."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
from typing import Any

from imagetool.run import exitcodes
from imagetool.run.containers import ContainerError, Records, monitor_alive, status
from imagetool.run.options import env_list, resources


def _image(store: Any, ref: str) -> str:
    """The store name of `ref` (a name or an image ID), pulling it when it is missing."""
    from imagetool import reference, views
    try:
        return views.resolve_one(store, ref)
    except views.Ambiguous as e:
        raise ContainerError(str(e)) from None
    except views.NotFound:
        pass  # not in the store: pull it, as docker run does
    from imagetool.pull import pull
    print(f"Unable to find image '{ref}' locally", file=sys.stderr)
    pull(store, ref, progress=False)
    return reference.normalize(ref)


def _settings(args: argparse.Namespace, exposed: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Config, HostConfig) of the record, from run/create's flags."""
    from imagetool.run import ports
    pbind = [ports.parse(p) for p in args.publish or []]
    if args.publish_all:  # every EXPOSEd port of the image on a free host port
        taken = {(p["ContainerPort"], p["Proto"]) for p in pbind}
        for key in sorted(exposed or {}):
            port, _, proto = key.partition("/")
            if port.isdigit() and (int(port), proto or "tcp") not in taken:
                pbind.append(ports.parse(f"0.0.0.0::{port}/{proto or 'tcp'}"))
    if args.network not in ("bridge", "host", "none", "slirp4netns"):
        from imagetool.run import usernet
        usernet.load(args.root, args.network)  # a user network: it must exist
    elif pbind and args.network not in ("bridge", "slirp4netns"):
        raise ContainerError("-p needs --network bridge (or a user network)")
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
    return config, host


def _create(args: argparse.Namespace) -> tuple[Any, Records, str]:
    from imagetool.run import lifecycle
    from imagetool.store import Store
    store = Store(args.root)
    recs = Records(args.root)
    image = _image(store, args.image)
    from imagetool import bundle
    iconf = bundle.image_parts(store, image)["config"].get("config") or {}
    config, host = _settings(args, iconf.get("ExposedPorts"))
    rec = lifecycle.create(store, recs, image, args.image, args.name, config, host)
    return store, recs, rec["Id"]


def cmd_create(args: argparse.Namespace) -> int:
    try:
        _store, _recs, cid = _create(args)
    except Exception as e:  # whatever failed before the container ran: the tool's
        if getattr(args, "debug", False):
            raise
        print(f"imagetool: create: {e}", file=sys.stderr)
        return exitcodes.TOOL_FAILED
    print(cid)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from imagetool.run import lifecycle
    try:
        store, recs, cid = _create(args)
    except Exception as e:  # whatever failed before the container ran: the tool's
        if getattr(args, "debug", False):
            raise
        print(f"imagetool: run: {e}", file=sys.stderr)
        return exitcodes.TOOL_FAILED
    try:
        return attach_run(store, recs, cid, args.detach, args.interactive, args.tty,
                          remove_on_error=True)
    except lifecycle.StartError as e:
        print(f"imagetool: run: {e}", file=sys.stderr)
        return e.code


def cmd_start(args: argparse.Namespace) -> int:
    from imagetool.run import lifecycle
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
    from imagetool.run import lifecycle
    sys.stdout.flush()
    sys.stderr.flush()
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
    saved = _raw_terminal() if tty and interactive and not detach else None
    try:
        # -di/-dit: the container's stdin stays open (attach feeds it); ours is not read
        fd, rest = lifecycle.start(store, recs, cid, not detach, interactive and not detach)
    except lifecycle.StartError:
        _restore_terminal(saved)
        if remove_on_error:
            from imagetool.run.cli import _remove_leftovers
            with contextlib.suppress(Exception):
                _remove_leftovers(recs, cid)
        raise
    except BaseException:
        _restore_terminal(saved)
        raise
    try:
        if detach:
            if not quiet:
                print(cid)
            return 0
        return wait_exit_message(recs, cid, fd, rest)
    finally:
        os.close(fd)
        _restore_terminal(saved)


def wait_exit_message(recs: Records, cid: str, fd: int, rest: bytes) -> int:
    """Forward INT/TERM/HUP to the container until the monitor reports its exit."""
    from imagetool.run.cli import _kill_runtime

    def forward(num: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):
            _kill_runtime(recs, cid, num)
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
