"""runc-style logging: --log FILE with --log-format text|json, and --debug.

Lines look like logrus' (runc's logger): text `time="..." level=debug msg="..." k=v`, json
`{"level":"debug","msg":"...","time":"..."}` in Go's compact encoding. containerd's shim reads
the last {"level":"error",...} line of the --log file.

Where lines go, as in runc: with --log, every line goes to the file (created up front, even
when nothing is logged); errors and warnings are also said on stderr in one plain line. Without
--log, debug lines go to stderr in the chosen format. Debug is off by default and then costs
one attribute test per call: nothing beyond os, sys and time is imported.
"""

import os
import sys
import time

from runtime import jsonio
from runtime.errors import PyruncError

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class Logger:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def open(self) -> None:
        """Create the --log file now (runc does, so it exists when nothing fails); a file
        that cannot be opened is a PyruncError, and later lines then go to stderr only."""
        if not self.path:
            return
        try:
            os.close(os.open(self.path, _FLAGS, 0o644))
        except OSError as e:
            path, self.path = self.path, None
            raise PyruncError(f"--log {path}: {e.strerror}") from None

    def _line(self, level: str, msg: str, fields: dict[str, object]) -> str:
        t = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
        if self.fmt == "json":
            rec = {"level": level, "msg": msg, "time": stamp, **fields}
            return jsonio.dumps_go(dict(sorted(rec.items()))) + "\n"
        extra = "".join(f" {k}={_text_value(v)}" for k, v in sorted(fields.items()))
        return f'time="{stamp}" level={level} msg={jsonio.dumps(msg)}{extra}\n'

    def _write(self, line: str) -> None:
        """Append one line to the --log file, if there is one (and it can still be opened)."""
        if not self.path:
            return
        try:
            fd = os.open(self.path, _FLAGS, 0o644)
        except OSError:
            return
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def error(self, msg: str) -> None:
        self._write(self._line("error", msg, {}))
        sys.stderr.write(f"pyrunc: {msg}\n")
        sys.stderr.flush()

    def warn(self, msg: str) -> None:
        self._write(self._line("warning", msg, {}))
        sys.stderr.write(f"pyrunc: warning: {msg}\n")

    def debug(self, msg: str, **fields: object) -> None:
        """A debug line (only with --debug): to the --log file, else to stderr."""
        if not self.debug_enabled:
            return
        line = self._line("debug", msg, fields)
        if self.path:
            self._write(line)
        else:
            sys.stderr.write(line)
            sys.stderr.flush()


def _text_value(v: object) -> str:
    """A field value as logrus' text format shows it: bare when it is a plain word."""
    s = str(v)
    if s and all(c.isalnum() or c in "-._/@^+" for c in s):
        return s
    return jsonio.dumps(s)


def log_init_started(log: Logger, pid: int) -> None:
    """The debug lines a created init gives, worded so that scripts grepping runc's --debug
    output for its init stages find them: runc 1.1's "nsexec container setup", later runc's
    "nsexec started", "child process in init()" and "init: closing the pipe to signal
    completion"."""
    log.debug("nsexec started: nsexec container setup done, the init was cloned into its "
              "namespaces", pid=pid)
    log.debug("child process in init(): rootfs, credentials and seccomp are set up, "
              "waiting on exec.fifo", pid=pid)
    log.debug("init: closing the pipe to signal completion (the init reported ready)", pid=pid)


def log_exec_started(log: Logger, pid: int) -> None:
    """exec's counterpart of log_init_started, worded for scripts grepping runc's exec debug
    output: "nsexec container setup", "child process in init()", "setns_init: about to exec"."""
    log.debug("nsexec container setup done: the process joined the container's namespaces",
              pid=pid)
    log.debug("child process in init(): credentials, seccomp and cgroup set up", pid=pid)
    log.debug("setns_init: about to exec the process", pid=pid)
