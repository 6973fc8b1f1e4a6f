"""The container verbs of imagetool's command line: run, ps, logs, stop, kill, rm, exec,
and `inspect` for containers (images still go to the image inspect). `register()` adds them
to imagetool's parser."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
from typing import Any

from imagetool.run.containers import ContainerError, Records, monitor_alive, status
from runtime import signals

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", text.strip().lower())
    if not m:
        raise ContainerError(f"invalid size {text!r} (want e.g. 64m, 1g)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_signal(text: str | int | None, default: int = signal.SIGTERM) -> int:
    """A stop/kill signal as docker takes it (runtime/signals.py: names, numbers, RTMIN+n;
    not 0); None or "" is `default`."""
    if text is None or text == "":
        return default
    try:
        return signals.parse(str(text))
    except signals.InvalidSignal as e:
        raise ContainerError(str(e)) from None


def _records(args: argparse.Namespace) -> Records:
    return Records(args.root)


def _env(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for path in args.env_file or []:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(_env_item(line))
    for e in args.env or []:
        out.append(_env_item(e))
    return [e for e in out if e is not None]


def _env_item(e: str) -> Any:
    if "=" in e:
        return e
    return f"{e}={os.environ[e]}" if e in os.environ else None


def _volume(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0].startswith("/") or not parts[1].startswith("/"):
        raise ContainerError(f"-v {text}: want /HOST:/CONTAINER[:ro|rw]")
    opts = ["rbind"]
    if len(parts) == 3:
        if parts[2] not in ("ro", "rw"):
            raise ContainerError(f"-v {text}: mode must be ro or rw")
        if parts[2] == "ro":
            opts.append("ro")
    if not os.path.exists(parts[0]):
        raise ContainerError(f"-v {text}: {parts[0]} does not exist")
    return {"destination": parts[1], "type": "bind", "source": os.path.abspath(parts[0]),
            "options": opts}


def _resources(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if args.memory:
        res["memory"] = {"limit": parse_bytes(args.memory)}
    if args.cpus:
        period = 100000
        res["cpu"] = {"period": period, "quota": int(float(args.cpus) * period)}
    if args.pids_limit:
        res["pids"] = {"limit": int(args.pids_limit)}
    return res


def _image(store: Any, ref: str) -> str:
    """The store name of `ref`, pulling it when it is missing."""
    from imagetool import reference, views
    try:
        hits = views.resolve(store, ref)
    except views.NotFound:
        hits = []  # not in the store: pull it, as docker run does
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ContainerError(f"{ref} matches {len(hits)} images ({', '.join(hits)})")
    from imagetool.pull import pull
    print(f"Unable to find image '{ref}' locally", file=sys.stderr)
    pull(store, ref, progress=False)
    return reference.normalize(ref)


def _edit_config(path: str, args: argparse.Namespace, mode: str,
                 volumes: list[dict[str, Any]]) -> None:
    with open(path) as f:
        spec = json.load(f)
    linux = spec.setdefault("linux", {})
    linux.setdefault("resources", {}).update(_resources(args))
    if args.read_only:
        spec["root"]["readonly"] = True
    spec["mounts"] = list(spec.get("mounts") or []) + volumes
    if mode == "host":
        linux["namespaces"] = [n for n in linux.get("namespaces", [])
                               if n["type"] != "network"]
        # never change the host's own sysctls
        linux["sysctl"] = {k: v for k, v in (linux.get("sysctl") or {}).items()
                           if not k.startswith("net.")}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=2)
    os.rename(tmp, path)


def _read_status(fd: int) -> Any:
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return json.loads(line), rest


def cmd_run(args: argparse.Namespace) -> int:
    from imagetool import bundle, convert
    from imagetool.run import monitor, ports
    from imagetool.store import Store
    store = Store(args.root)
    recs = Records(args.root)
    image = _image(store, args.image)
    parts = bundle.image_parts(store, image)
    iconf = parts["config"].get("config") or {}
    env = _env(args)
    pbind = [ports.parse(p) for p in args.publish or []]
    mode = args.network
    if pbind and mode != "bridge":
        raise ContainerError("-p needs --network bridge")
    volumes = [_volume(v) for v in args.volume or []]
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    cmd = list(args.command) if args.command else None
    try:   # unlike unpack (umoci's sh), run refuses an image without a command, as docker does
        convert.command(iconf, entrypoint, cmd)
    except convert.ConvertError:
        print(f"imagetool: run: no command specified: nothing to run for {parts['name']} (no "
              "Entrypoint or Cmd): give a command after the image", file=sys.stderr)
        return 125
    rec = recs.new(args.name, {
        "Image": parts["name"], "ImageID": parts["config_desc"]["digest"],
        "Path": "", "Args": [],
        "Config": {"Env": env, "Cmd": cmd, "Entrypoint": entrypoint, "User": args.user,
                   "WorkingDir": args.workdir, "Hostname": args.hostname,
                   "StopSignal": iconf.get("StopSignal") or "SIGTERM",
                   "Tty": args.tty, "OpenStdin": args.interactive},
        "HostConfig": {"AutoRemove": args.rm, "NetworkMode": mode, "PortBindings": pbind,
                       "Binds": args.volume or [], "ReadonlyRootfs": args.read_only,
                       "Resources": _resources(args)},
        "State": {}})
    cid = rec["Id"]
    bpath = recs.path(cid, "bundle")
    try:
        bundle.unpack(store, parts["name"], bpath, mode="overlay", entrypoint=entrypoint,
                      cmd=cmd, env=env, user=args.user, workdir=args.workdir,
                      hostname=args.hostname or cid[:12], terminal=args.tty)
        from imagetool.run import etcfiles
        etc = etcfiles.write(recs.path(cid), args.hostname or cid[:12], mode)
        _edit_config(os.path.join(bpath, "config.json"), args, mode, etc + volumes)
        with open(os.path.join(bpath, "config.json")) as f:
            proc = json.load(f)["process"]
        with recs.lock():
            r = recs.load(cid)
            r["Path"], r["Args"] = proc["args"][0], proc["args"][1:]
            recs.save(r)
    except BaseException:
        with contextlib.suppress(Exception):
            bundle.remove(bpath)
        recs.remove(cid)
        raise
    sys.stdout.flush()
    sys.stderr.flush()
    if args.tty and not args.detach:
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
    saved = _raw_terminal() if args.tty and args.interactive and not args.detach else None
    try:
        # -dit: the pty stays open for the container; the caller's terminal is not read
        fd = monitor.launch(args.root, cid, not args.detach,
                            args.interactive and not (args.detach and args.tty))
    except BaseException:
        _restore_terminal(saved)
        raise
    try:
        got = _read_status(fd)
        if got is None or "started" not in got[0]:
            msg = got[0].get("error") if got else "the monitor died"
            with contextlib.suppress(Exception):
                bundle.remove(bpath)
            recs.remove(cid)
            raise ContainerError(f"cannot start container: {msg}")
        if args.detach:
            print(cid)
            return 0
        rest = got[1]

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
                return 125
            rest += chunk
        return int(json.loads(rest.partition(b"\n")[0]).get("exit", 125))
    finally:
        os.close(fd)
        _restore_terminal(saved)


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


def _kill_runtime(recs: Records, cid: str, sig: int) -> None:
    from runtime.container import Container
    from runtime.errors import PyruncError
    try:
        Container(recs.runtime_root, cid).kill(sig)
    except PyruncError as e:
        raise ContainerError(f"container {cid[:12]} is not running ({e})") from None


def _wait_exit(recs: Records, cid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rec = recs.load(cid)
        except ContainerError:
            return True
        if status(rec) in ("exited", "dead") and not monitor_alive(rec):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def cmd_stop(args: argparse.Namespace) -> int:
    recs = _records(args)
    rc = 0
    for name in args.containers:
        try:
            cid = recs.resolve(name)
            rec = recs.load(cid)
            if status(rec) == "running":
                sig = parse_signal(args.signal or rec["Config"].get("StopSignal"))
                with contextlib.suppress(ContainerError):
                    _kill_runtime(recs, cid, sig)
                if not _wait_exit(recs, cid, args.time):
                    with contextlib.suppress(ContainerError):
                        _kill_runtime(recs, cid, signal.SIGKILL)
                    _wait_exit(recs, cid, 30)
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
            if status(recs.load(cid)) != "running":
                raise ContainerError(f"container {name} is not running")
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
            if st in ("running", "created") and monitor_alive(rec):
                if not args.force:
                    raise ContainerError(f"cannot remove running container {name}: stop it "
                                         "first or use -f")
                with contextlib.suppress(ContainerError):
                    _kill_runtime(recs, cid, signal.SIGKILL)
                if not _wait_exit(recs, cid, 30):
                    raise ContainerError(f"container {name} did not stop")
            _remove_leftovers(recs, cid)
            print(name)
        except ContainerError as e:
            print(f"imagetool: rm: {e}", file=sys.stderr)
            rc = 1
    return rc


def _remove_leftovers(recs: Records, cid: str) -> None:
    """What a dead monitor could not clean: the runtime container, network, bundle."""
    from imagetool import bundle
    from imagetool.run import network
    from runtime.container import Container
    from runtime.errors import PyruncError
    with contextlib.suppress(PyruncError, OSError):
        Container(recs.runtime_root, cid).delete(True, lambda m: None)
    with contextlib.suppress(Exception):
        network.release(recs.root, cid)
    if os.path.isdir(recs.path(cid, "bundle")):
        bundle.remove(recs.path(cid, "bundle"))
    recs.remove(cid)


def _ago(stamp: str) -> str:
    import calendar
    try:
        t = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        return ""
    d = max(0, int(time.time() - t))
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if d >= n:
            return f"{d // n} {unit}{'s' if d // n > 1 else ''} ago"
    return f"{d} seconds ago"


def cmd_ps(args: argparse.Namespace) -> int:
    rows = []
    for rec in _records(args).all():
        st = status(rec)
        if st != "running" and not args.all:
            continue
        s = rec["State"]
        if st == "running":
            text = f"Up since {s.get('StartedAt', '')[:19]}"
        elif st == "exited":
            text = f"Exited ({s.get('ExitCode')}) {_ago(s.get('FinishedAt', ''))}"
        else:
            text = st.capitalize()
        pts = ", ".join(f"{p['HostIp']}:{p['HostPort']}->{p['ContainerPort']}/{p['Proto']}"
                        for p in (rec.get("NetworkSettings") or {}).get("Ports") or [])
        cmd = " ".join([rec.get("Path", ""), *rec.get("Args", [])])
        rows.append((rec["Id"][:12], rec["Image"], json.dumps(cmd[:30]), _ago(rec["Created"]),
                     text, pts, rec["Name"], st))
    if args.quiet:
        for r in rows:
            print(r[0])
        return 0
    if args.format == "json":
        for r in rows:
            print(json.dumps({"ID": r[0], "Image": r[1], "Command": r[2], "Created": r[3],
                              "Status": r[4], "Ports": r[5], "Names": r[6], "State": r[7]}))
        return 0
    head = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
    table = [head] + [r[:7] for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(6)]
    for r in table:
        print("   ".join(str(r[i]).ljust(widths[i]) for i in range(6)) + "   " + r[6])
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from imagetool.run import logs
    recs = _records(args)
    cid = recs.resolve(args.container)
    rec = recs.load(cid)

    def emit(e: dict[str, Any]) -> None:
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


def cmd_exec(args: argparse.Namespace) -> int:
    from imagetool import convert, layers
    from runtime.container import Container
    from runtime.exec import ExecOptions, exec_in, process_from_flags, wait_forwarding
    recs = _records(args)
    cid = recs.resolve(args.container)
    if status(recs.load(cid)) != "running":
        raise ContainerError(f"container {args.container} is not running")
    c = Container(recs.runtime_root, cid)
    proc = process_from_flags(c.state["process"], list(args.command), _env(args),
                              args.workdir, None, [], [], False, args.tty)
    if args.user:
        rootfs = c.state["rootfs"]
        u = convert.resolve_user(args.user, layers.read_file_in(rootfs, "/etc/passwd"),
                                 layers.read_file_in(rootfs, "/etc/group"))
        proc["user"] = {"uid": u["uid"], "gid": u["gid"]}
        if u.get("additionalGids"):
            proc["user"]["additionalGids"] = list(u["additionalGids"])
    if not args.interactive and not args.tty:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    pid, master = exec_in(c, ExecOptions(proc, detach=args.detach))
    if args.detach:
        return 0
    return wait_forwarding(pid, master)


def cmd_inspect_any(args: argparse.Namespace, image_inspect: Any) -> int:
    recs = _records(args)
    found, rest = [], []
    for n in args.names:
        try:
            rec = recs.load(recs.resolve(n))
            rec["State"]["Status"] = status(rec)
            found.append(rec)
        except ContainerError:
            rest.append(n)
    if found and not rest:
        print(json.dumps(found, indent=2))
        return 0
    if found:
        raise ContainerError(f"inspect: give containers or images, not both ({rest[0]})")
    return image_inspect(args)


def register(verb: Any, sub: Any) -> None:
    """Add the container verbs; `verb(name, fn, help)` is imagetool's subparser maker."""
    sp = verb("run", cmd_run, "run a command in a new container (a monitor process keeps it)")
    sp.add_argument("-d", "--detach", action="store_true", help="print the id and return")
    sp.add_argument("--rm", action="store_true", help="remove the container when it exits")
    sp.add_argument("--name")
    sp.add_argument("-e", "--env", action="append", metavar="K=V")
    sp.add_argument("--env-file", action="append", metavar="FILE")
    sp.add_argument("-p", "--publish", action="append", metavar="[HOSTIP:]HOST:CTR[/proto]")
    sp.add_argument("-v", "--volume", action="append", metavar="HOST:CTR[:ro]")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("-u", "--user")
    sp.add_argument("--entrypoint")
    sp.add_argument("--hostname")
    sp.add_argument("--memory", "-m")
    sp.add_argument("--cpus")
    sp.add_argument("--pids-limit", type=int)
    sp.add_argument("--read-only", action="store_true")
    sp.add_argument("--network", "--net", choices=("none", "host", "bridge"),
                    default="bridge")
    sp.add_argument("-t", "--tty", action="store_true",
                    help="give the container a pty (its output is logged as stdout)")
    sp.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")

    sp = verb("ps", cmd_ps, "list containers")
    sp.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("--format", choices=("table", "json"), default="table")

    sp = verb("logs", cmd_logs, "print a container's logs")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-t", "--timestamps", action="store_true")
    sp.add_argument("--tail", type=int)
    sp.add_argument("container")

    sp = verb("stop", cmd_stop, "stop containers: the stop signal, then SIGKILL")
    sp.add_argument("-t", "--time", type=float, default=10.0)
    sp.add_argument("-s", "--signal")
    sp.add_argument("containers", nargs="+")

    sp = verb("kill", cmd_kill, "send a signal (default SIGKILL) to containers")
    sp.add_argument("-s", "--signal")
    sp.add_argument("containers", nargs="+")

    sp = verb("rm", cmd_rm, "remove containers")
    sp.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    sp.add_argument("containers", nargs="+")

    sp = verb("exec", cmd_exec, "run a command in a running container")
    sp.add_argument("-d", "--detach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("-t", "--tty", action="store_true")
    sp.add_argument("-e", "--env", action="append", metavar="K=V")
    sp.add_argument("--env-file", action="append", metavar="FILE")
    sp.add_argument("-u", "--user")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("container")
    sp.add_argument("command", nargs=argparse.REMAINDER)

    insp = sub.choices.get("inspect")
    if insp is not None:
        image_fn = insp.get_default("fn")
        insp.set_defaults(fn=lambda a: cmd_inspect_any(a, image_fn))
