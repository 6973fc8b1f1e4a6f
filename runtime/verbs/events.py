"""`events`: stats lines and OOM notices from a container's cgroup (runc's output)."""

from __future__ import annotations

import json
import sys
import time

from runtime.errors import PyruncError
from runtime.verbs import manager_of

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import IO, Any

    from runtime.container import Container


def _line(event: dict[str, Any], out: IO[str]) -> None:
    out.write(json.dumps(event, separators=(",", ":")) + "\n")
    out.flush()


def stats_event(container: Container) -> dict[str, Any]:
    return {"type": "stats", "id": container.id, "data": manager_of(container).stats()}


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
    mgr = manager_of(container)
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
