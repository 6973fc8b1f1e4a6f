"""Progress for transfers, one line or bar per blob: rich bars on a terminal, plain lines
otherwise (logs and CI stay readable). Reporters are called from worker threads."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Reporter:
    """Silent base: the hooks a transfer calls. Subclass to display or to observe."""

    def start(self, key: str, total: int, label: str) -> None: ...

    def advance(self, key: str, n: int) -> None: ...

    def resumed(self, key: str, offset: int) -> None: ...

    def skipped(self, key: str, label: str, reason: str) -> None: ...

    def done(self, key: str) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class PlainReporter(Reporter):
    """`<digest12>: downloading 2.1 MB` ... `<digest12>: done` lines."""

    def __init__(self, out: TextIO | None = None, verb: str = "downloading") -> None:
        self.out = out or sys.stderr
        self.verb = verb
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def start(self, key: str, total: int, label: str) -> None:
        self._line(f"{short(key)}: {self.verb} {label} ({human(total)})")

    def resumed(self, key: str, offset: int) -> None:
        self._line(f"{short(key)}: connection dropped, resuming at {human(offset)}")

    def skipped(self, key: str, label: str, reason: str) -> None:
        self._line(f"{short(key)}: {label} {reason}")

    def done(self, key: str) -> None:
        self._line(f"{short(key)}: done")

    def message(self, text: str) -> None:
        self._line(text)


class RichReporter(Reporter):
    """A rich progress bar per blob on the terminal."""

    def __init__(self, out: TextIO | None = None, verb: str = "Downloading") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )
        self.verb = verb
        self.console = Console(file=out or sys.stderr)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(),
                                 console=self.console, transient=False)
        self.progress.start()
        self._tasks: dict[str, Any] = {}
        self._totals: dict[str, int] = {}
        self._descs: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, key: str, total: int, label: str) -> None:
        with self._lock:
            desc = f"{short(key)} {self.verb} {label}"
            self._descs[key] = desc
            self._totals[key] = total
            if key in self._tasks:
                self.progress.reset(self._tasks[key], total=total, description=desc)
            else:
                self._tasks[key] = self.progress.add_task(desc, total=total)

    def advance(self, key: str, n: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self.progress.advance(task, n)

    def resumed(self, key: str, offset: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self.progress.update(task, completed=offset)
        self.console.print(f"{short(key)}: connection dropped, resuming at {human(offset)}")

    def skipped(self, key: str, label: str, reason: str) -> None:
        self.progress.console.print(f"{short(key)}: {label} {reason}")

    def done(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None:  # the bar's line ends as docker's does: "Pull complete"
            word = "Pull complete" if self.verb == "Downloading" else "Push complete"
            desc = self._descs.get(key, short(key))
            self.progress.update(task, completed=self._totals.get(key, 0),
                                 description=f"{desc}: {word}")

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(progress: bool | None, verb: str = "downloading",
                  out: TextIO | None = None) -> Reporter:
    """False: silent. None or True: rich bars when `out` is a terminal, plain lines otherwise."""
    if progress is False:
        return Reporter()
    stream = out or sys.stderr
    if stream.isatty():
        return RichReporter(stream, verb.capitalize())
    return PlainReporter(stream, verb)
