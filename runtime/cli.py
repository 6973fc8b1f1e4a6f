"""pyrunc's command line: runc's flags and subcommands mapped onto the library.

Kept thin and cheap to import: argparse, json and the runtime modules only; anything heavy
(jsonschema for `validate`) is imported inside the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from runtime import OCI_VERSION, __version__
from runtime.errors import PyruncError
from runtime.log import Logger
from runtime.state import DEFAULT_ROOT

# Go's flag package accepts -flag as well as --flag; engines use both.
_LONG = {"root", "log", "log-format", "debug", "systemd-cgroup", "rootless", "bundle",
         "pid-file", "console-socket", "no-pivot", "no-new-keyring", "preserve-fds", "detach",
         "keep", "format", "quiet", "force", "all", "help", "version"}


def _normalise(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        name = a[1:].split("=", 1)[0]
        if a.startswith("-") and not a.startswith("--") and name in _LONG:
            a = "-" + a
        out.append(a)
    return out


def parse_signal(text: str) -> int:
    """'9', 'KILL', 'SIGKILL' and 'kill' all name SIGKILL."""
    if text.isdigit():
        num = int(text)
        if 0 < num < signal.NSIG:
            return num
        raise PyruncError(f"invalid signal {text!r}")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if sig is None:
        raise PyruncError(f"invalid signal {text!r}")
    return int(sig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrunc", description="An OCI runtime with runc's command "
                                "line (build, ship, run: this is the run).")
    p.add_argument("--version", "-v", action="store_true", help="print the version")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", default=None, help="log file (default: stderr only)")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="not supported: pyrunc manages cgroupfs directly")
    p.add_argument("--rootless", default="auto", help="true|false|auto")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("spec", help="write a default config.json")
    s.add_argument("--bundle", "-b", default=".")
    s.add_argument("--rootless", action="store_true")

    def lifecycle(name: str, helptext: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--bundle", "-b", default=".")
        c.add_argument("--pid-file", default=None)
        c.add_argument("--console-socket", default=None)
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument("id")
        return c

    lifecycle("create", "create a container, its init waiting for start")
    r = lifecycle("run", "create and start a container, wait for it, delete it")
    r.add_argument("--detach", "-d", action="store_true")
    r.add_argument("--keep", action="store_true")
    for name, helptext in (("start", "start a created container"),
                           ("state", "print a container's state JSON"),
                           ("pause", "freeze every process of a container"),
                           ("resume", "thaw a paused container")):
        sub.add_parser(name, help=helptext).add_argument("id")
    k = sub.add_parser("kill", help="signal the container's init (or all its processes)")
    k.add_argument("--all", "-a", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = sub.add_parser("delete", help="delete a stopped container (--force: any)")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("id")
    ls = sub.add_parser("list", help="list containers")
    ls.add_argument("--format", "-f", default="table", choices=["table", "json"])
    ls.add_argument("--quiet", "-q", action="store_true")
    v = sub.add_parser("validate", help="check a bundle's config.json against specs/")
    v.add_argument("--bundle", "-b", default=".")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_normalise(sys.argv[1:] if argv is None else argv))
    log = Logger(args.log, args.log_format, args.debug)
    if args.version:
        print(f"pyrunc version {__version__}\nspec: {OCI_VERSION}")
        return 0
    if not args.command:
        build_parser().print_help()
        return 0
    try:
        if args.systemd_cgroup:
            raise PyruncError("--systemd-cgroup is not supported: pyrunc manages cgroupfs "
                              "directly (drop the flag or set SystemdCgroup=false)")
        if args.rootless == "true" and os.geteuid() == 0:
            raise PyruncError("--rootless=true is not supported when running as root")
        return COMMANDS[args.command](args, log)
    except PyruncError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130


def cmd_spec(args, log: Logger) -> int:
    from runtime.spec import default_spec
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise PyruncError(f"{path} exists: remove it first")
    data = json.dumps(default_spec(args.rootless), indent="\t") + "\n"
    from runtime.state import atomic_write
    atomic_write(path, data.encode(), 0o666 & ~_umask())
    return 0


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _create_opts(args):
    from runtime.create import CreateOptions
    return CreateOptions(root=args.root, cid=args.id, bundle=args.bundle,
                         pid_file=args.pid_file, console_socket=args.console_socket,
                         no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring,
                         preserve_fds=args.preserve_fds)


def cmd_create(args, log: Logger) -> int:
    from runtime.create import create
    create(_create_opts(args), warn=log.warn)
    return 0


def cmd_run(args, log: Logger) -> int:
    from runtime.run import run
    return run(_create_opts(args), detach=args.detach, keep=args.keep, log=log)


def _container(args):
    from runtime.container import Container
    return Container(args.root, args.id)


def cmd_start(args, log: Logger) -> int:
    _container(args).start(log.warn)
    return 0


def cmd_state(args, log: Logger) -> int:
    print(json.dumps(_container(args).public(), indent=2))
    return 0


def cmd_kill(args, log: Logger) -> int:
    _container(args).kill(parse_signal(args.signal), args.all)
    return 0


def cmd_delete(args, log: Logger) -> int:
    from runtime.container import Container
    from runtime.errors import NotExistError
    try:
        c = Container(args.root, args.id)
    except NotExistError:
        if args.force:
            return 0  # runc: delete --force of an unknown id succeeds quietly
        raise
    c.delete(args.force, log.warn)
    return 0


def cmd_pause(args, log: Logger) -> int:
    _container(args).pause()
    return 0


def cmd_resume(args, log: Logger) -> int:
    _container(args).resume()
    return 0


def cmd_list(args, log: Logger) -> int:
    from runtime.container import list_containers
    items = [c.public() for c in list_containers(args.root)]
    if args.quiet:
        for it in items:
            print(it["id"])
    elif args.format == "json":
        print(json.dumps(items))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"],
                  i.get("owner") or "root") for i in items]
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_validate(args, log: Logger) -> int:
    from runtime.validate import validate_bundle
    problems = validate_bundle(args.bundle)
    for p in problems:
        print(p)
    if problems:
        raise PyruncError(f"{os.path.join(args.bundle, 'config.json')}: "
                          f"{len(problems)} problem(s) against specs/config-schema.json")
    print(f"{os.path.join(args.bundle, 'config.json')}: valid")
    return 0


COMMANDS = {"spec": cmd_spec, "create": cmd_create, "run": cmd_run, "start": cmd_start,
            "state": cmd_state, "kill": cmd_kill, "delete": cmd_delete, "pause": cmd_pause,
            "resume": cmd_resume, "list": cmd_list, "validate": cmd_validate}
