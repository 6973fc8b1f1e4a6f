"""`update`, `events` and `ps`: runc's flags for the cgroup commands.

runtime/cli.py calls register(COMMANDS) to add the command specs to its table and merges
our COMMANDS (name -> handler) into its HANDLERS. Nothing beyond sys is imported at module
level; the handlers import runtime.verbs.update/events/ps only when run.
"""

from __future__ import annotations

import sys

from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

    from runtime.log import Logger

def parse_bytes(text: str, flag: str) -> int:
    """A size as runc's --memory flags take it: "-1" (unlimited), bytes, or 512k, 64m, 1.5g,
    2GiB (binary units: runtime/units.py, docker/go-units' RAMInBytes)."""
    if text.strip() == "-1":
        return -1
    from runtime.units import parse_bytes as read_bytes
    try:
        return read_bytes(text.strip())
    except ValueError:
        raise PyruncError(f"invalid value for {flag}: {text!r}") from None


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "500ms", "1m30s", "2h"; runtime/units.py) in seconds; a bare
    number is seconds; no sign."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    from runtime.units import parse_duration as read_duration
    try:
        if t[:1] in ("+", "-"):
            raise ValueError(t)
        return read_duration(t) / 1e9
    except ValueError:
        raise PyruncError(f"invalid duration {text!r} (e.g. 5s, 500ms, 1m)") from None


def _int(text: str, flag: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise PyruncError(f"invalid value for {flag}: {text!r}") from None


def _commands() -> list[Any]:
    from runtime.cliparse import Arg, Command, Opt
    ident = [Arg("id", "the container id")]
    return [
        Command("update", "update a running container's resource limits (cgroups)", [
            Opt("--resources", "-r", value="FILE",
                help="LinuxResources JSON file, or - for stdin (other flags are then ignored)"),
            Opt("--memory", value="BYTES", help="memory limit (bytes, 64m, 1g; -1: none)"),
            Opt("--memory-reservation", value="BYTES", help="memory soft limit"),
            Opt("--memory-swap", value="BYTES", help="memory+swap limit (-1: unlimited)"),
            Opt("--kernel-memory", value="BYTES", help="ignored (deprecated), as in runc"),
            Opt("--kernel-memory-tcp", value="BYTES", help="kernel TCP buffer limit (v1)"),
            Opt("--cpu-shares", "--cpu-share", value="N", help="CPU shares (relative weight)"),
            Opt("--cpu-quota", value="USECS", help="CFS quota per period (-1: none)"),
            Opt("--cpu-period", value="USECS", help="CFS period"),
            Opt("--cpu-rt-period", value="USECS", help="realtime period"),
            Opt("--cpu-rt-runtime", value="USECS", help="realtime runtime per period"),
            Opt("--cpuset-cpus", value="LIST", help="CPUs to use (0-3, 0,1)"),
            Opt("--cpuset-mems", value="LIST", help="memory nodes to use"),
            Opt("--pids-limit", value="N", help="maximum number of pids (-1: none)"),
            Opt("--blkio-weight", value="N", help="block IO weight"),
            Opt("--l3-cache-schema", value="SCHEMA", help="refused: no Intel RDT"),
            Opt("--mem-bw-schema", value="SCHEMA", help="refused: no Intel RDT"),
        ], ident),
        Command("events", "print stats and OOM events as JSON lines", [
            Opt("--interval", value="DURATION", default="5s", help="stats interval"),
            Opt("--stats", help="print the stats once and exit"),
        ], ident),
        Command("ps", "list the processes of a container", [
            Opt("--format", "-f", value="FMT", default="table", choices=("table", "json")),
        ], ident + [Arg("ps_args", "options for ps(1), table format (default -ef)",
                        rest=True)]),
    ]


def register(commands: dict[str, Any]) -> None:
    """Add update/events/ps to the CLI's command table (runtime/cli.py's COMMANDS)."""
    for c in _commands():
        commands[c.name] = c


def resources_from_flags(args: Any) -> dict[str, Any]:
    """The LinuxResources that runc's per-field flags describe (only the given fields)."""
    r: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        r.setdefault(section, {})[key] = value

    for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                      ("memory_swap", "swap"), ("kernel_memory", "kernel"),
                      ("kernel_memory_tcp", "kernelTCP")):
        v = getattr(args, flag)
        if v is not None:
            put("memory", key, parse_bytes(v, "--" + flag.replace("_", "-")))
    for flag, key in (("cpu_shares", "shares"), ("cpu_quota", "quota"),
                      ("cpu_period", "period"), ("cpu_rt_period", "realtimePeriod"),
                      ("cpu_rt_runtime", "realtimeRuntime")):
        v = getattr(args, flag)
        if v is not None:
            put("cpu", key, _int(v, "--" + flag.replace("_", "-")))
    if args.cpuset_cpus is not None:
        put("cpu", "cpus", args.cpuset_cpus)
    if args.cpuset_mems is not None:
        put("cpu", "mems", args.cpuset_mems)
    if args.pids_limit is not None:
        put("pids", "limit", _int(args.pids_limit, "--pids-limit"))
    if args.blkio_weight is not None:
        # Passed through as runc does; the kernel (BFQ: 1..1000) has the last word.
        put("blockIO", "weight", _int(args.blkio_weight, "--blkio-weight"))
    return r


def parse_exec_cgroup(values: list[str] | None) -> dict[str, str]:
    """exec --cgroup, as runc reads it: PATH (every controller) or CTRL[,CTRL]:PATH; a
    later flag overrides an earlier one for the same controller."""
    out: dict[str, str] = {}
    for v in values or []:
        parts = v.split(":")
        if len(parts) == 1:
            out[""] = v
        elif len(parts) == 2:
            for ctrl in parts[0].split(","):
                out[ctrl] = parts[1]
        else:
            raise PyruncError(f"invalid --cgroup argument: {v}")
    return out


def _read_resources(src: str) -> dict[str, Any]:
    import json
    try:
        if src == "-":
            text = sys.stdin.read()
        else:
            with open(src) as f:
                text = f.read()
    except OSError as e:
        raise PyruncError(f"--resources {src}: {e.strerror}") from None
    try:
        r = json.loads(text)
    except ValueError as e:
        raise PyruncError(f"--resources {src}: not valid JSON: {e}") from None
    if not isinstance(r, dict):
        raise PyruncError(f"--resources {src}: must be a JSON object (LinuxResources)")
    return r


def _container(args: Any):
    from runtime.container import Container
    return Container(args.root, args.id)


def cmd_update(args: Any, log: Logger) -> int:
    if args.l3_cache_schema or args.mem_bw_schema:
        raise PyruncError("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not "
                          "supported")
    r = _read_resources(args.resources) if args.resources else resources_from_flags(args)
    from runtime.verbs.update import update
    update(_container(args), r, log.warn)
    return 0


def cmd_events(args: Any, log: Logger) -> int:
    from runtime.verbs.events import events
    events(_container(args), parse_duration(args.interval), args.stats)
    return 0


def cmd_ps(args: Any, log: Logger) -> int:
    ps_args = list(args.ps_args or [])
    if ps_args and ps_args[0] == "--":
        ps_args = ps_args[1:]
    from runtime.verbs.ps import ps
    ps(_container(args), args.format, ps_args)
    return 0


COMMANDS = {"update": cmd_update, "events": cmd_events, "ps": cmd_ps}
