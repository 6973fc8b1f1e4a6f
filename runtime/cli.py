"""pyrunc's command line: runc's flags and subcommands mapped onto the library.

Kept thin and cheap to import: our own small parser (runtime/cliparse.py; argparse costs
~4.5 ms a call), json and the runtime modules only; anything heavy (jsonschema for
`validate`) is imported inside the command that needs it.
"""

import os
import sys

from runtime import jsonio
from runtime.cliparse import Arg, Command, Opt, UnknownCommand, UsageError, parse, usage_error
from runtime.errors import PyruncError
from runtime.log import Logger
from runtime.state import DEFAULT_ROOT

GLOBAL = [
    Opt("--version", "-v", help="print the version"),
    Opt("--root", value="DIR", default=DEFAULT_ROOT, help="state directory"),
    Opt("--log", value="FILE", help="log file (errors always go to stderr too)"),
    Opt("--log-format", value="FMT", default="text", choices=("text", "json"),
        help="text or json lines {level,msg,time}"),
    Opt("--debug", help="debug logging"),
    Opt("--systemd-cgroup", help="not supported: pyrunc manages cgroupfs directly"),
    Opt("--rootless", value="BOOL", default="auto", help="true|false|auto"),
    Opt("--criu", value="PATH", help="accepted for compatibility; unused"),
]


def _create_flags() -> list[Opt]:
    """create's and run's options."""
    return [
        Opt("--bundle", "-b", value="DIR", default=".", help="the bundle directory"),
        Opt("--pid-file", value="FILE", help="write the init's pid here"),
        Opt("--console-socket", value="PATH", help="unix socket receiving the pty master"),
        Opt("--no-pivot", help="move the rootfs onto / and chroot instead of pivot_root"),
        Opt("--no-new-keyring", help="keep the caller's session keyring"),
        Opt("--preserve-fds", value="N", default=0, type=int,
            help="pass fds 3..3+N-1 into the container"),
    ]


_ID = [Arg("id", "the container id")]

# Each verb's options are built only when that verb runs (or for help): `lambda: [...]`.
COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("spec", "write a default config.json",
            lambda: [Opt("--bundle", "-b", value="DIR", default=".",
                         help="the bundle directory"),
                     Opt("--rootless", help="a config for a user namespace")]),
    Command("create", "create a container, its init waiting for start", _create_flags,
            _ID),
    Command("run", "create and start a container, wait for it, delete it",
            lambda: _create_flags() + [
                Opt("--detach", "-d", help="return once started"),
                Opt("--keep", help="do not delete the container at exit")], _ID),
    Command("start", "start a created container", [], _ID),
    Command("state", "print a container's state JSON", [], _ID),
    Command("kill", "signal the container's init (or all its processes)",
            lambda: [Opt("--all", "-a", help="signal every process of the container")],
            _ID + [Arg("signal", "name or number (default SIGTERM)", optional=True,
                       default="SIGTERM")]),
    Command("delete", "delete a stopped container (--force: any)",
            lambda: [Opt("--force", "-f", help="kill the container first if it runs")],
            _ID),
    Command("list", "list containers",
            lambda: [Opt("--format", "-f", value="FMT", default="table",
                         choices=("table", "json"), help="table or json"),
                     Opt("--quiet", "-q", help="ids only")]),
    Command("pause", "freeze every process of a container", [], _ID),
    Command("resume", "thaw a paused container", [], _ID),
    Command("exec", "run a new process inside a running container", lambda: [
        Opt("--process", "-p", value="FILE", help="a full OCI process JSON"),
        Opt("--tty", "-t", help="allocate a pseudo-TTY"),
        Opt("--console-socket", value="PATH", help="unix socket receiving the pty master"),
        Opt("--detach", "-d", help="return once the process runs"),
        Opt("--pid-file", value="FILE", help="write the process's pid here"),
        Opt("--env", "-e", value="K=V", multi=True, help="add an environment variable"),
        Opt("--cwd", value="DIR", help="working directory inside the container"),
        Opt("--user", "-u", value="UID[:GID]", help="run as this user"),
        Opt("--additional-gids", "-g", value="GID", type=int, multi=True,
            help="an additional group"),
        Opt("--cap", "-c", value="CAP", multi=True, help="add a capability"),
        Opt("--no-new-privs", help="set no_new_privs"),
        Opt("--preserve-fds", value="N", default=0, type=int,
            help="pass fds 3..3+N-1 into the process"),
        Opt("--ignore-paused", help="exec even into a paused container"),
        Opt("--cgroup", value="[CTRL[,CTRL]:]PATH", multi=True,
            help="run in this sub-cgroup of the container's (for these v1 controllers)"),
        Opt("--apparmor", value="PROFILE", help="refused: no AppArmor on this host"),
        Opt("--process-label", value="LABEL", help="refused: no SELinux on this host"),
    ], _ID + [Arg("argv", "the program and its arguments", rest=True)]),
    Command("features", "print the runtime-spec features JSON of this pyrunc"),
    Command("checkpoint", "not supported (needs CRIU integration)",
            lambda: [Opt("--image-path", value="DIR"), Opt("--work-path", value="DIR"),
                     Opt("--leave-running"), Opt("--tcp-established"), Opt("--ext-unix-sk"),
                     Opt("--shell-job"), Opt("--file-locks")], _ID),
    Command("restore", "not supported (needs CRIU integration)",
            lambda: [Opt("--image-path", value="DIR"), Opt("--work-path", value="DIR"),
                     Opt("--bundle", "-b", value="DIR", default="."), Opt("--detach", "-d"),
                     Opt("--pid-file", value="FILE"), Opt("--console-socket", value="PATH")],
            _ID),
    Command("validate", "check a bundle's config.json against specs/",
            lambda: [Opt("--bundle", "-b", value="DIR", default=".")]),
]}
CGROUP_COMMANDS = ("update", "events", "ps")  # runtime/verbs/cli.py, loaded when used


def all_commands() -> dict[str, Command]:
    """COMMANDS with update/events/ps added: their module is imported only for them and for
    help, which keeps it off the create/start/state/kill/delete path."""
    if CGROUP_COMMANDS[0] not in COMMANDS:
        from runtime.verbs import cli as verbs_cli
        verbs_cli.register(COMMANDS)
        HANDLERS.update(verbs_cli.COMMANDS)
    return COMMANDS


def _parse(argv: list[str]):
    try:
        return parse(argv, GLOBAL, COMMANDS)
    except UnknownCommand as e:
        if e.name not in CGROUP_COMMANDS:
            raise
    return parse(argv, GLOBAL, all_commands())


def parse_signal(text: str) -> int:
    """kill's signal: a name or number (runtime/signals.py), and 0 as runc takes it."""
    from runtime import signals  # only kill needs it
    try:
        return signals.parse(text, allow_zero=True)
    except signals.InvalidSignal as e:
        raise PyruncError(str(e)) from None


def entry() -> None:
    """The console entry point: main(), then exit without the interpreter's teardown
    (2-3 ms a call); everything we write is flushed or written unbuffered first."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status as runc's: 0, 1 for a failure or a usage error,
    3 for an unknown command, 255 for a failure of exec itself (else the process's)."""
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
    except UnknownCommand as e:
        from runtime.clihelp import no_topic
        sys.stderr.write(f"pyrunc: {no_topic(e.name)}\n")
        return 3
    except UsageError as e:
        return usage_error("pyrunc", str(e))
    if args.help or args.version or not args.command:
        return _help_or_version(args)
    log = Logger(args.log, args.log_format, args.debug)
    fail = 255 if args.command == "exec" else 1
    try:
        log.open()
        if args.systemd_cgroup:
            raise PyruncError("--systemd-cgroup is not supported: pyrunc manages cgroupfs "
                              "directly (drop the flag or set SystemdCgroup=false)")
        if args.rootless == "true" and os.geteuid() == 0:
            raise PyruncError("--rootless=true is not supported when running as root")
        return HANDLERS[args.command](args, log)
    except PyruncError as e:
        log.error(str(e))
        return fail
    except OSError as e:
        log.error(_os_error(e))
        return fail
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line; the traceback only with --debug
        log.error(f"internal error: {type(e).__name__}: {e}")
        if log.debug_enabled:
            import traceback
            log.debug(traceback.format_exc())
        return fail


def _help_or_version(args) -> int:
    from runtime import clihelp
    if args.version and not args.help:
        sys.stdout.write(clihelp.version_text("pyrunc"))
        return 0
    topic = args.topic or args.command
    if topic is None:
        sys.stdout.write(clihelp.app_help("pyrunc", GLOBAL, all_commands()))
    elif topic in all_commands():
        sys.stdout.write(clihelp.command_help("pyrunc", COMMANDS[topic]))
    else:
        sys.stderr.write(f"pyrunc: {clihelp.no_topic(topic)}\n")
        return 3
    return 0


def _os_error(e: OSError) -> str:
    """An OSError in one line, naming the file: `open FILE: No such file or directory`."""
    return f"{e.filename}: {e.strerror}" if e.filename else (e.strerror or str(e))


def cmd_spec(args, log: Logger) -> int:
    from runtime.spec import default_spec
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise PyruncError(f"{path} exists: remove it first")
    import json
    data = json.dumps(default_spec(args.rootless), indent="\t") + "\n"
    from runtime.state import atomic_write
    atomic_write(path, data.encode(), 0o666 & ~_umask())
    return 0


def _ensure_site() -> None:
    """The fast launcher runs python -I -S (no site-packages); jsonschema lives there."""
    if not any(p.endswith("site-packages") for p in sys.path):
        import site
        site.main()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _create_opts(args):
    from runtime.create import CreateOptions
    return CreateOptions(root=args.root, cid=args.id, bundle=args.bundle,
                         pid_file=args.pid_file, console_socket=args.console_socket,
                         no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring,
                         preserve_fds=args.preserve_fds,
                         rootless=None if args.rootless == "auto" else args.rootless == "true")


def cmd_create(args, log: Logger) -> int:
    from runtime.create import create
    log.debug("create: bundle", bundle=args.bundle, id=args.id)
    state = create(_create_opts(args), warn=log.warn)
    log.debug("create: init process started, waiting for start", pid=state["pid"])
    from runtime.log import log_init_started
    log_init_started(log, state["pid"])
    return 0


def cmd_run(args, log: Logger) -> int:
    from runtime.run import run
    return run(_create_opts(args), detach=args.detach, keep=args.keep, log=log)


def _container(args):
    from runtime.container import Container
    return Container(args.root, args.id)


def cmd_start(args, log: Logger) -> int:
    _container(args).start(log.warn)
    log.debug("start: container process released", id=args.id)
    return 0


def cmd_state(args, log: Logger) -> int:
    print(jsonio.dumps(_container(args).public(), indent=2))
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
    log.debug("delete: container removed", id=args.id)
    return 0


def cmd_pause(args, log: Logger) -> int:
    _container(args).pause()
    return 0


def cmd_resume(args, log: Logger) -> int:
    _container(args).resume()
    return 0


def cmd_list(args, log: Logger) -> int:
    from runtime.container import list_containers
    items = [_list_item(c) for c in list_containers(args.root)]
    if args.quiet:
        for it in items:
            print(it["id"])
    elif args.format == "json":
        print(jsonio.dumps_go(items) if items else "null")  # Go's nil slice, as runc
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"], i["owner"]]
                 for i in items]
        sys.stdout.write(_tabwriter(rows))
    return 0


def _list_item(c) -> dict:
    """One container as runc's list shows it: state's fields in runc's order, the owner
    being the name of the state directory's owner (#UID when it has none)."""
    st = c.public()
    uid = os.stat(c.dir.path).st_uid
    import pwd
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = f"#{uid}"
    return dict(st, owner=owner)  # public() has runc's field order


def _tabwriter(rows: list[list[str]]) -> str:
    """Columns as Go's tabwriter (minwidth 12, padding 3) lays out runc's list: every column
    but the last as wide as its widest cell plus 3, at least 12."""
    widths = [max(12, max(len(r[c]) for r in rows) + 3) for c in range(len(rows[0]) - 1)]
    return "".join("".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + r[-1]
                   + "\n" for r in rows)


def cmd_exec(args, log: Logger) -> int:
    """exec; its own failures say "exec failed: ..." and exit 255, as runc's."""
    try:
        return _exec(args, log)
    except PyruncError as e:
        raise PyruncError(f"exec failed: {e}") from None
    except OSError as e:
        raise PyruncError(f"exec failed: {_os_error(e)}") from None


def _exec(args, log: Logger) -> int:
    from runtime.exec import ExecOptions, exec_in, process_from_flags, wait_forwarding
    from runtime.verbs.cli import parse_exec_cgroup
    if args.apparmor or args.process_label:
        raise PyruncError("exec: --apparmor/--process-label need AppArmor/SELinux, which this "
                          "host does not have")
    c = _container(args)
    if args.process:
        try:
            with open(args.process, "rb") as f:
                proc = jsonio.loads(f.read())
        except OSError as e:
            raise PyruncError(f"--process {args.process}: {e.strerror}") from None
        except ValueError as e:
            raise PyruncError(f"--process {args.process}: {e}") from None
        if args.tty:
            proc["terminal"] = True
        base = c.state.get("process", {})
        if "capabilities" not in proc and "capabilities" in base:
            proc["capabilities"] = base["capabilities"]  # runc: unset means the container's
    else:
        proc = process_from_flags(c.state.get("process", {}), args.argv, args.env,
                                  args.cwd, args.user, args.additional_gids, args.cap,
                                  args.no_new_privs, args.tty)
    # the pid file is written here, so that a bad path kills the process it names
    opts = ExecOptions(proc, args.detach, None, args.console_socket,
                       args.preserve_fds, args.ignore_paused, parse_exec_cgroup(args.cgroup))
    log.debug("exec: joining the container", id=c.id, init=c.pid)
    pid, master = exec_in(c, opts)
    log.debug("exec: process started", pid=pid)
    if log.debug_enabled:
        from runtime.log import log_exec_started
        log_exec_started(log, pid)
    if args.pid_file:
        _exec_pid_file(args.pid_file, pid, master)
    if args.detach:
        return 0
    status = wait_forwarding(pid, master)
    log.debug("exec: process exited", pid=pid, status=status)
    return status


def _exec_pid_file(path: str, pid: int, master: int | None) -> None:
    """Write exec's --pid-file; when that fails, SIGKILL and reap the process (as runc)."""
    from runtime.state import atomic_write
    try:
        atomic_write(os.path.abspath(path), str(pid).encode(), 0o644)
    except OSError as e:
        import _signal
        try:
            os.kill(pid, _signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if master is not None:
            os.close(master)
        raise PyruncError(f"--pid-file {path}: {e.strerror}") from None


def cmd_features(args, log: Logger) -> int:
    from runtime.features import features
    print(jsonio.dumps(features(), indent=4))
    return 0


def cmd_checkpoint(args, log: Logger) -> int:
    raise PyruncError(f"{args.command} is not supported by pyrunc: checkpoint/restore needs "
                      "CRIU, which pyrunc does not drive")


def cmd_validate(args, log: Logger) -> int:
    _ensure_site()
    from runtime.validate import validate_bundle
    problems = validate_bundle(args.bundle)
    for p in problems:
        print(p)
    if problems:
        raise PyruncError(f"{os.path.join(args.bundle, 'config.json')}: "
                          f"{len(problems)} problem(s) against specs/config-schema.json")
    print(f"{os.path.join(args.bundle, 'config.json')}: valid")
    return 0


HANDLERS = {"spec": cmd_spec, "create": cmd_create, "run": cmd_run, "start": cmd_start,
            "state": cmd_state, "kill": cmd_kill, "delete": cmd_delete, "pause": cmd_pause,
            "resume": cmd_resume, "list": cmd_list, "exec": cmd_exec,
            "features": cmd_features, "checkpoint": cmd_checkpoint, "restore": cmd_checkpoint,
            "validate": cmd_validate}
