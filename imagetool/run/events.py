"""The event log: one JSON object a line in <store root>/events.jsonl, docker's event shape
({"Type", "Action", "Actor": {"ID", "Attributes"}, "time", "timeNano"}), appended with
O_APPEND (one write per event, so concurrent writers never interleave). `read()` filters
by time and can follow the file. Recording never fails the verb that records."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from imagetool import units

FILE = "events.jsonl"


def record(root: str, action: str, rec: dict[str, Any], **extra: str) -> None:
    """Append a container event for the record `rec`."""
    t = time.time_ns()
    attrs = {"image": (rec.get("Config") or {}).get("Image") or rec.get("Image", ""),
             "name": rec.get("Name", ""), **extra}
    line = json.dumps({"status": action, "id": rec.get("Id", ""), "from": attrs["image"],
                       "Type": "container", "Action": action,
                       "Actor": {"ID": rec.get("Id", ""), "Attributes": attrs},
                       "scope": "local", "time": t // 10**9, "timeNano": t}) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(root, FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def parse_when(text: str) -> float:
    """docker's --since/--until: RFC 3339, unix seconds, or an age (a Go duration: 10m,
    1h30m, 1.5h, 300ms)."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:  # a Go duration (imagetool/units.py): 1.5h, 1h30m, 300ms
        return time.time() - units.parse_duration(text) / 1e9
    except ValueError:
        pass
    from imagetool import views
    when = views.parse_time(text)
    if when is None:
        raise ValueError(f"invalid time {text!r} (want RFC 3339, unix seconds or e.g. 10m)")
    return when.timestamp()


def stamp(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        f".{ns % 10**9:09d}Z"


def read(root: str, since: float, until: float | None, follow: bool) -> Iterator[dict]:
    """Events from `since` to `until`; with follow, keep waiting for new ones."""
    path = os.path.join(root, FILE)
    pos = 0
    buf = b""
    while True:
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            f.seek(pos)
            buf += f.read()
            pos = f.tell()
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = e.get("timeNano", 0) / 1e9
            if until is not None and t > until:
                return
            if t >= since:
                yield e
        if not follow or (until is not None and time.time() > until):
            return
        time.sleep(0.1)
