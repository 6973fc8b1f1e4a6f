"""The cgroup operations on a container: update, events, ps (runc's behaviour and output).

Imported only by these commands, never on the create/start/state/kill/delete path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from runtime.cgroups import load_manager
from runtime.errors import NotRunningError, PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    from runtime.cgroups.manager import Manager
    from runtime.container import Container


def _manager(container: Container) -> Manager:
    mgr = load_manager(container.state)
    if mgr is None:
        raise PyruncError(f"container {container.id} has no cgroup")
    return mgr


def update(container: Container, resources: dict[str, Any],
           warn: Callable[[str], None] | None = None) -> None:
    """Apply a (partial) LinuxResources to a live container. Fields left out or zero keep
    their current value; what the host can't apply is an error naming the controller."""
    if not isinstance(resources, dict):
        raise PyruncError("update: resources must be a JSON object (LinuxResources)")
    container.dir.lock()
    try:
        if container.status() == "stopped":
            raise NotRunningError(container.id)
        # Like runc, update never touches device rules: engines resend the spec's list, and
        # re-applying it would open a window of deny-all.
        resources = {k: v for k, v in resources.items() if k != "devices"}
        _manager(container).set(resources, warn)
    finally:
        container.dir.unlock()


def _line(event: dict[str, Any], out: IO[str]) -> None:
    out.write(json.dumps(event, separators=(",", ":")) + "\n")
    out.flush()


def stats_event(container: Container) -> dict[str, Any]:
    return {"type": "stats", "id": container.id, "data": _manager(container).stats()}


def events(container: Container, interval: float = 5.0, stats_once: bool = False,
           out: IO[str] | None = None, max_seconds: float | None = None) -> None:
    """`--stats`: one stats line. Otherwise a stats line every `interval` and an
    {"type":"oom"} line for each OOM kill, until the container stops (or `max_seconds`).
    Each wait is bounded, so a container that stops is noticed within half a second."""
    out = out or sys.stdout
    if container.status() == "stopped":
        raise PyruncError(f"container with id {container.id} is not running")
    if stats_once:
        _line(stats_event(container), out)
        return
    if interval <= 0:
        raise PyruncError("events: --interval must be positive")
    from runtime.cgroups.events import oom_watcher
    mgr = _manager(container)
    watcher = oom_watcher(mgr)
    start = time.monotonic()
    next_stats = start + interval
    try:
        while True:
            now = time.monotonic()
            wait = min(0.5, max(0.0, next_stats - now))
            if watcher is not None:
                n, gone = watcher.wait(wait)
                for _ in range(n):
                    _line({"type": "oom", "id": container.id}, out)
                if gone:
                    watcher.close()
                    watcher = None
            else:
                time.sleep(wait)
            now = time.monotonic()
            if now >= next_stats:
                _line({"type": "stats", "id": container.id, "data": mgr.stats()}, out)
                next_stats += interval * (1 + int((now - next_stats) // interval))
            if container.status() == "stopped":
                if watcher is not None:  # an OOM that killed the init arrives with its exit
                    n, _gone = watcher.wait(0.05)
                    for _ in range(n):
                        _line({"type": "oom", "id": container.id}, out)
                return
            if max_seconds is not None and now - start >= max_seconds:
                return
    finally:
        if watcher is not None:
            watcher.close()


def ps(container: Container, fmt: str = "table", ps_args: list[str] | None = None,
       out: IO[str] | None = None) -> None:
    """json: the container's host pids as a JSON array (what containerd's shim parses).
    table: `ps` (default `-ef`) filtered to the container's processes, header kept."""
    out = out or sys.stdout
    pids = _manager(container).pids()
    if fmt == "json":
        out.write(json.dumps(pids) + "\n")
        out.flush()
        return
    if fmt != "table":
        raise PyruncError(f"invalid format option {fmt!r}: use table or json")
    args = list(ps_args or []) or ["-ef"]
    try:
        p = subprocess.run(["ps", *args], capture_output=True,
                           text=True, check=False)
    except FileNotFoundError:
        raise PyruncError("ps: the ps command is not installed") from None
    if p.returncode != 0:
        raise PyruncError(f"ps {' '.join(args)}: {p.stderr.strip() or 'failed'}")
    lines = p.stdout.splitlines()
    if not lines:
        raise PyruncError("ps printed nothing")
    header = lines[0].split()
    if "PID" not in header:
        raise PyruncError("couldn't find PID field in ps output")
    col = header.index("PID")
    want = set(pids)
    out.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in want:
            out.write(line + "\n")
    out.flush()
