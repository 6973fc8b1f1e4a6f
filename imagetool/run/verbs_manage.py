"""The container verbs docker users reach for after run: restart, wait, pause, unpause,
rename, port, top, stats, attach and container prune. Thin: the work is in
control.py, containers.py and the runtime's cgroup manager."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

from imagetool.run import control
from imagetool.run.records import ContainerError, Records, monitor_alive, status


def _each(args: argparse.Namespace, verb: str, fn: Any) -> int:
    """Run fn(recs, cid, name) for every container named; one error line each, rc 1."""
    recs = Records(args.root)
    rc = 0
    for name in args.containers:
        try:
            fn(recs, recs.resolve(name), name)
        except ContainerError as e:
            print(f"imagetool: {verb}: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_restart(args: argparse.Namespace) -> int:
    from imagetool.run.verbs_run import attach_run
    from imagetool.store import Store
    store = Store(args.root)

    def one(recs: Records, cid: str, name: str) -> None:
        control.stop(recs, cid, None, args.time)
        rec = recs.load(cid)
        attach_run(store, recs, cid, True, False, bool(rec["Config"].get("Tty")),
                   remove_on_error=False, quiet=True)
        print(name)
    return _each(args, "restart", one)


def cmd_wait(args: argparse.Namespace) -> int:
    def one(recs: Records, cid: str, _name: str) -> None:
        last = recs.load(cid)
        while True:
            try:
                last = recs.load(cid)
            except ContainerError:
                break  # removed (--rm): its last known exit code
            if status(last) in ("exited", "dead") and not monitor_alive(last):
                break
            time.sleep(0.05)
        print((last.get("State") or {}).get("ExitCode", 0))
    return _each(args, "wait", one)


def cmd_pause(args: argparse.Namespace) -> int:
    def one(recs: Records, cid: str, name: str) -> None:
        control.pause(recs, cid)
        print(name)
    return _each(args, "pause", one)


def cmd_unpause(args: argparse.Namespace) -> int:
    def one(recs: Records, cid: str, name: str) -> None:
        control.resume(recs, cid)
        print(name)
    return _each(args, "unpause", one)


def cmd_rename(args: argparse.Namespace) -> int:
    from imagetool.run import events
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    old = recs.load(cid).get("Name", "")
    recs.rename(cid, args.new_name)
    events.record(recs.root, "rename", recs.load(cid), oldName=old)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    recs = Records(args.root)
    rec = recs.load(recs.resolve(args.container))
    ports = (rec.get("NetworkSettings") or {}).get("Ports") or [] \
        if status(rec) in ("running", "paused") else []
    want = args.port
    if want and "/" not in want:
        want += "/tcp"
    lines = []
    for p in ports:
        key = f"{p['ContainerPort']}/{p['Proto']}"
        if want and key != want:
            continue
        where = f"{p['HostIp']}:{p['HostPort']}"
        lines.append(where if want else f"{key} -> {where}")
    if want and not lines:
        raise ContainerError(f"no public port '{want}' published for {args.container}")
    for line in lines:
        print(line)
    return 0


def _manager(recs: Records, cid: str) -> Any:
    from runtime.container import Container, load_manager
    from runtime.errors import PyruncError
    try:
        c = Container(recs.runtime_root, cid)
    except PyruncError:
        raise ContainerError(f"container {cid[:12]} is not running") from None
    mgr = load_manager(c.state)
    if mgr is None:
        raise ContainerError(f"container {cid[:12]} has no cgroup")
    return mgr


def cmd_top(args: argparse.Namespace) -> int:
    """The container's processes as ps(1) shows them on the host (docker top's way)."""
    import subprocess
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    if status(recs.load(cid)) not in ("running", "paused"):
        raise ContainerError(f"container {args.container} is not running")
    pids = sorted(_manager(recs, cid).pids())
    opts = args.ps_args or ["-f"]
    out = subprocess.run(["ps", *opts], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise ContainerError(f"ps {' '.join(opts)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    head = lines[0].split()
    if "PID" not in head:
        raise ContainerError(f"ps {' '.join(opts)}: its output has no PID column")
    col = head.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split(None, len(head) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0


def stats_row(recs: Records, rec: dict[str, Any]) -> dict[str, Any]:
    """docker stats' columns for one container, from its cgroup files (runc's stats)."""
    from imagetool.views import human_size
    cid = rec["Id"]
    s = _manager(recs, cid).stats()
    mem = (s.get("memory") or {}).get("usage") or {}
    used, limit = int(mem.get("usage") or 0), int(mem.get("limit") or 0)
    if not limit or limit >= 1 << 62:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu_ns = int(((s.get("cpu") or {}).get("usage") or {}).get("total") or 0)
    return {"ID": cid[:12], "Name": rec.get("Name", ""), "CPUNanos": cpu_ns,
            "MemUsage": f"{_iec(used)} / {_iec(limit)}",
            "MemPerc": f"{100.0 * used / limit:.2f}%" if limit else "0.00%",
            "PIDs": str((s.get("pids") or {}).get("current") or 0),
            "NetIO": "--", "BlockIO": f"{human_size(_blkio(s, 'Read'))} / "
                                      f"{human_size(_blkio(s, 'Write'))}"}


def _blkio(s: dict[str, Any], op: str) -> int:
    entries = (s.get("blkio") or {}).get("ioServiceBytesRecursive") or []
    return sum(int(e.get("value") or 0) for e in entries if e.get("op") == op)


def _iec(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{n}B"


STATS_HEADERS = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS", "Container": "CONTAINER"}


def cmd_stats(args: argparse.Namespace) -> int:
    """docker stats: one shot (--no-stream) or a refreshed table until interrupted; CPU %
    over the sampling interval (1 s, docker's)."""
    from imagetool.run.formatting import print_rows
    recs = Records(args.root)
    if args.containers:
        chosen = [recs.load(recs.resolve(n)) for n in args.containers]
    else:
        chosen = [r for r in recs.all() if status(r) in ("running", "paused")]
    fmt = args.format or "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t" \
        "{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
    ncpu = os.cpu_count() or 1

    def sample() -> dict[str, dict[str, Any]]:
        out = {}
        for r in chosen:
            with contextlib.suppress(ContainerError):
                out[r["Id"]] = stats_row(recs, r)
        return out
    before, t0 = sample(), time.monotonic()
    while True:
        time.sleep(1.0 if not args.no_stream else 0.5)
        after, t1 = sample(), time.monotonic()
        rows = []
        for cid, row in after.items():
            prev = before.get(cid, row)
            pct = 100.0 * (row["CPUNanos"] - prev["CPUNanos"]) / ((t1 - t0) * 1e9)
            rows.append(dict(row, CPUPerc=f"{min(pct, 100.0 * ncpu):.2f}%",
                             Container=row["Name"]))
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print_rows(fmt, rows, STATS_HEADERS)
        sys.stdout.flush()
        if args.no_stream:
            return 0
        before, t0 = after, t1


def cmd_attach(args: argparse.Namespace) -> int:
    """Follow a running container's output (from its log, stdout and stderr kept apart)
    until it exits, and send our stdin to it when it was started with -i (attach.py);
    returns its exit status, or 1 after the detach keys (it runs on), as docker."""
    from imagetool.run import attach, logs
    keys = attach.parse_keys(args.detach_keys or attach.DEFAULT_KEYS)
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    rec = recs.load(cid)
    if status(rec) not in ("running", "paused"):
        raise ContainerError("you cannot attach to a stopped container, start it first")
    cfg = rec.get("Config") or {}
    log = open(rec["LogPath"], "rb")  # noqa: SIM115 - closed below
    log.seek(0, os.SEEK_END)  # output from here on: what our input makes is not missed
    feed = None
    if cfg.get("OpenStdin") and not args.no_stdin:
        try:
            feed = attach.Input(recs.path(cid), keys, bool(cfg.get("Tty")) and os.isatty(0))
        except OSError as e:
            log.close()
            raise ContainerError(f"cannot attach to the container's input: {e}") from None

    def emit(e: dict[str, Any]) -> None:
        out = sys.stderr if e.get("stream") == "stderr" else sys.stdout
        out.write(e.get("log", ""))
        out.flush()

    def done() -> bool:
        if feed is not None and feed.detached.is_set():
            return True
        try:
            return status(recs.load(cid)) not in ("running", "paused")
        except ContainerError:
            return True
    try:
        while True:
            finished = done()
            for entry in logs.entries(log):
                emit(entry)
            if finished:
                break
            time.sleep(0.1)
    finally:
        log.close()
        if feed is not None:
            feed.close()
    if feed is not None and feed.detached.is_set():
        print("read escape sequence", file=sys.stderr)  # docker's words and status
        return 1
    with contextlib.suppress(ContainerError):
        return int((recs.load(cid).get("State") or {}).get("ExitCode") or 0)
    return 0


def cmd_container_prune(args: argparse.Namespace) -> int:
    from imagetool.run.lifecycle import remove
    recs = Records(args.root)
    if not args.force and sys.stdin.isatty():
        answer = input("WARNING! This will remove all stopped containers.\n"
                       "Are you sure you want to continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    print("Deleted Containers:")
    for rec in recs.all():
        if status(rec) in ("exited", "dead", "created") and not monitor_alive(rec):
            remove(recs, rec["Id"])
            print(rec["Id"])
    print("\nTotal reclaimed space: 0B")
    return 0


def register(verb: Any) -> None:
    def containers(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("containers", nargs="+", metavar="CONTAINER", help="names or ids")

    sp = verb("restart", cmd_restart, "stop and start containers again")
    sp.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS",
                    help="how long to wait before SIGKILL (default 10)")
    containers(sp)
    containers(verb("wait", cmd_wait, "wait for containers to exit; print their exit codes"))
    containers(verb("pause", cmd_pause, "freeze every process of containers"))
    containers(verb("unpause", cmd_unpause, "thaw paused containers"))
    sp = verb("rename", cmd_rename, "give a container a new name")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("new_name", metavar="NEW_NAME", help="the new name")
    sp = verb("port", cmd_port, "list a container's published ports")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("port", nargs="?", metavar="PORT[/PROTO]", help="only this port")
    sp = verb("top", cmd_top, "a container's processes (ps -f, or the ps options given)")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS_OPTIONS",
                    help="options for ps(1), e.g. aux")
    sp = verb("stats", cmd_stats, "containers' CPU, memory, block I/O and pids (cgroups)")
    sp.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    sp.add_argument("--format", metavar="FORMAT", help="table, json or a Go template")
    sp.add_argument("containers", nargs="*", metavar="CONTAINER",
                    help="names or ids (default: the running ones)")
    sp = verb("attach", cmd_attach, "follow a running container's output until it exits, "
              "and send it our input when it was started with -i")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("--no-stdin", action="store_true", help="do not send our input")
    sp.add_argument("--detach-keys", metavar="KEYS",
                    help="the keys that detach (default ctrl-p,ctrl-q)")
    sp = verb("container-prune", cmd_container_prune, "remove every stopped container "
              "(also `container prune`)")
    sp.add_argument("-f", "--force", action="store_true", help="do not ask")
