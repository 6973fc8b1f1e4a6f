"""docker's json-file log shape: one JSON object per line,
{"log": "text\\n", "stream": "stdout"|"stderr", "time": RFC 3339 with nanoseconds}."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from imagetool.run.records import now


class LogWriter:
    """Splits each stream's bytes into lines; a partial line waits for its end (or close)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial.get(stream, b"") + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        if len(self.partial[stream]) > 16384:  # docker splits long lines at 16 KiB too
            lines.append(self.partial[stream])
            self.partial[stream] = b""
            self._emit(stream, lines, last_partial=True)
        else:
            self._emit(stream, lines)

    def _emit(self, stream: str, lines: list[bytes], last_partial: bool = False) -> None:
        out = []
        for i, line in enumerate(lines):
            end = "" if last_partial and i == len(lines) - 1 else "\n"
            text = line.decode("utf-8", "replace") + end
            out.append(json.dumps({"log": text, "stream": stream, "time": now()}) + "\n")
        if out:
            os.write(self.fd, "".join(out).encode())

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._emit(stream, [rest], last_partial=True)
        self.partial = {}
        os.close(self.fd)


def entries(f: BinaryIO) -> Iterator[dict[str, Any]]:
    for line in f:
        if not line.endswith(b"\n"):
            f.seek(-len(line), os.SEEK_CUR)  # an unfinished line: read it again later
            return
        try:
            yield json.loads(line)
        except ValueError:
            continue


def follow(path: str, emit: Callable[[dict[str, Any]], None], follow: bool,
           done: Callable[[], bool], tail: int | None = None) -> None:
    """Emit the log's entries; with follow, keep going until done() (then drain once)."""
    with open(path, "rb") as f:
        if tail is not None:
            items = list(entries(f))
            for e in items[len(items) - tail if tail < len(items) else 0:]:
                emit(e)
        else:
            for e in entries(f):
                emit(e)
        while follow:
            finished = done()
            for e in entries(f):
                emit(e)
            if finished:
                return
            time.sleep(0.1)
