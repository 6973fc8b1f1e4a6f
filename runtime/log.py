"""runc-style logging: --log FILE with --log-format text|json; errors also go to stderr.

containerd's shim reads the last {"level":"error","msg":...} line of the --log file.
"""

from __future__ import annotations

import os
import sys
import time

from runtime import jsonio


class Logger:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def _line(self, level: str, msg: str) -> str:
        t = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
        if self.fmt == "json":
            return jsonio.dumps({"level": level, "msg": msg, "time": stamp}) + "\n"
        return f'time="{stamp}" level={level} msg={jsonio.dumps(msg)}\n'

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            os.write(fd, self._line(level, msg).encode())
        finally:
            os.close(fd)

    def error(self, msg: str) -> None:
        self._write("error", msg)
        sys.stderr.write(f"pyrunc: {msg}\n")
        sys.stderr.flush()

    def warn(self, msg: str) -> None:
        self._write("warning", msg)
        sys.stderr.write(f"pyrunc: warning: {msg}\n")

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._write("debug", msg)
            sys.stderr.write(f"pyrunc: debug: {msg}\n")
