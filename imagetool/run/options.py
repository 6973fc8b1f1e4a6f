"""The flags the container verbs share, parsed: sizes, signals, -e/--env-file, -v, the
resource limits. Bad values raise ContainerError naming the flag."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from imagetool import units
from imagetool.run.records import ContainerError
from runtime import signals


def parse_bytes(text: str) -> int:
    """A size as docker's --memory and tmpfs-size take it (imagetool/units.py: 64m, 1.5g,
    512KiB, 100); surrounding blanks are ignored."""
    try:
        return units.parse_bytes(text.strip())
    except ValueError:
        raise ContainerError(f"invalid size {text!r} (want e.g. 64m, 1g)") from None


def parse_signal(text: str | int | None, default: int = signal.SIGTERM) -> int:
    """A stop/kill signal as docker takes it (runtime/signals.py: names, numbers, RTMIN+n;
    not 0); None or "" is `default`."""
    if text is None or text == "":
        return default
    try:
        return signals.parse(str(text))
    except signals.InvalidSignal as e:
        raise ContainerError(str(e)) from None


def env_list(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for path in args.env_file or []:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(env_item(line))
    for e in args.env or []:
        out.append(env_item(e))
    return [e for e in out if e is not None]


def env_item(e: str) -> Any:
    if "=" in e:
        return e
    return f"{e}={os.environ[e]}" if e in os.environ else None


def volume(text: str) -> dict[str, Any]:
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


def resources(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if args.memory:
        res["memory"] = {"limit": parse_bytes(args.memory)}
    if args.cpus:
        period = 100000
        res["cpu"] = {"period": period, "quota": int(float(args.cpus) * period)}
    if args.pids_limit:
        res["pids"] = {"limit": int(args.pids_limit)}
    return res
