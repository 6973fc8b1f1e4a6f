"""The container verbs of imagetool's command line: run, ps, logs, stop, kill, rm, exec,
and `inspect` for containers (images still go to the image inspect). `register()` adds them
to imagetool's parser."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any

from imagetool.run import control, lifecycle
from imagetool.run.options import parse_bytes, parse_signal  # noqa: F401 - the CLI's API
from imagetool.run.records import ContainerError, Records, monitor_alive, status


def _records(args: argparse.Namespace) -> Records:
    return Records(args.root)


_kill_runtime = control.kill_runtime
_wait_exit = control.wait_exit
_remove_leftovers = lifecycle.remove


def cmd_stop(args: argparse.Namespace) -> int:
    recs = _records(args)
    rc = 0
    for name in args.containers:
        try:
            control.stop(recs, recs.resolve(name), args.signal, args.time)
            print(name)
        except ContainerError as e:
            print(f"imagetool: stop: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_kill(args: argparse.Namespace) -> int:
    recs = _records(args)
    sig = parse_signal(args.signal, signal.SIGKILL)
    rc = 0
    for name in args.containers:
        try:
            cid = recs.resolve(name)
            if status(recs.load(cid)) not in ("running", "paused"):
                raise ContainerError(f"container {name} is not running")
            control.mark_stopped_by_user(recs, cid)
            _kill_runtime(recs, cid, sig)
            print(name)
        except ContainerError as e:
            print(f"imagetool: kill: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_rm(args: argparse.Namespace) -> int:
    recs = _records(args)
    rc = 0
    for name in args.containers:
        try:
            cid = recs.resolve(name)
            rec = recs.load(cid)
            st = status(rec)
            if monitor_alive(rec):
                if not args.force:
                    raise ContainerError(f"cannot remove running container {name}: stop it "
                                         "first or use -f")
                control.mark_stopped_by_user(recs, cid)
                with contextlib.suppress(ContainerError):
                    _kill_runtime(recs, cid, signal.SIGKILL)
                if st == "paused":
                    with contextlib.suppress(ContainerError):
                        control.resume(recs, cid)
                if not _wait_exit(recs, cid, 30):
                    raise ContainerError(f"container {name} did not stop")
            if args.volumes:
                from imagetool.run import volumes
                volumes.remove_anonymous(recs.root, recs.load(cid))
            _remove_leftovers(recs, cid)
            print(name)
        except ContainerError as e:
            print(f"imagetool: rm: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_logs(args: argparse.Namespace) -> int:
    from imagetool.run import logs
    recs = _records(args)
    cid = recs.resolve(args.container)
    rec = recs.load(cid)

    from imagetool.run.events import parse_when
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None

    def emit(e: dict[str, Any]) -> None:
        if since is not None or until is not None:
            from imagetool import views
            when = views.parse_time(e.get("time"))
            t = when.timestamp() if when else 0.0
            if (since is not None and t < since) or (until is not None and t > until):
                return
        out = sys.stderr if e.get("stream") == "stderr" else sys.stdout
        text = e.get("log", "")
        if args.timestamps:
            text = f"{e.get('time', '')} {text}"
        out.write(text)
        out.flush()

    def done() -> bool:
        try:
            r = recs.load(cid)
        except ContainerError:
            return True
        return status(r) != "running"
    if not os.path.exists(rec["LogPath"]):
        return 0
    logs.follow(rec["LogPath"], emit, args.follow, done, args.tail)
    return 0


def cmd_inspect_any(args: argparse.Namespace, image_inspect: Any) -> int:
    recs = _records(args)
    found, rest = [], []
    for n in args.names:
        try:
            from imagetool.run import inspect_doc
            found.append(inspect_doc.container(recs, recs.load(recs.resolve(n))))
        except ContainerError:
            rest.append(n)
    if found and not rest:
        from imagetool.run.formatting import print_docs
        print_docs(found, getattr(args, "format", None))
        return 0
    if found:
        raise ContainerError(f"inspect: give containers or images, not both ({rest[0]})")
    return image_inspect(args)


def register(verb: Any, sub: Any) -> None:
    """Add the container verbs; `verb(name, fn, help)` is imagetool's subparser maker."""
    from imagetool.run import verbs_run
    verbs_run.register(verb)

    from imagetool.run import verbs_ps
    verbs_ps.register(verb)

    sp = verb("logs", cmd_logs, "print a container's logs")
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    sp.add_argument("-t", "--timestamps", action="store_true", help="prefix each line's time")
    sp.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    sp.add_argument("--since", metavar="WHEN", help="only lines from then on (RFC 3339, "
                    "unix seconds, or an age: 10m, 1h)")
    sp.add_argument("--until", metavar="WHEN", help="only lines up to then")
    sp.add_argument("container", help="container name or id (prefix)")

    sp = verb("stop", cmd_stop, "stop containers: the stop signal, then SIGKILL")
    sp.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS",
                    help="how long to wait before SIGKILL (default 10)")
    sp.add_argument("-s", "--signal", help="signal to stop with (default: the image's "
                    "STOPSIGNAL, else SIGTERM)")
    sp.add_argument("containers", nargs="+", metavar="CONTAINER", help="names or ids")

    sp = verb("kill", cmd_kill, "send a signal (default SIGKILL) to containers")
    sp.add_argument("-s", "--signal", help="signal name or number (default SIGKILL)")
    sp.add_argument("containers", nargs="+", metavar="CONTAINER", help="names or ids")

    sp = verb("rm", cmd_rm, "remove containers")
    sp.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    sp.add_argument("-v", "--volumes", action="store_true",
                    help="also remove its anonymous volumes")
    sp.add_argument("containers", nargs="+", metavar="CONTAINER", help="names or ids")

    from imagetool.run import verbs_data, verbs_exec, verbs_manage, verbs_net, verbs_system
    verbs_exec.register(verb)
    verbs_net.register(verb)
    verbs_manage.register(verb)
    verbs_data.register(verb)
    verbs_data.register_fs(verb)
    verbs_system.register(verb)

    insp = sub.choices.get("inspect")
    if insp is not None:
        image_fn = insp.get_default("fn")
        insp.set_defaults(fn=lambda a: cmd_inspect_any(a, image_fn))

