"""A --console-socket receiver for the terminal cases (what runc's tests use `recvtty` for):
listens on a unix socket, takes the one pty master a runtime sends, and reads everything
the container writes to its terminal until the last slave closes (or a deadline).

    with ConsoleReceiver(path) as rx:
        rt("run", "-d", "--console-socket", path, ...)
        text = rx.output(timeout=20)
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

from runtime.console import recv_fd


class ConsoleReceiver(threading.Thread):
    def __init__(self, path: str, deadline: float = 30) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.deadline = time.monotonic() + deadline
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.srv.settimeout(deadline)
        self.name = ""
        self.data = b""
        self.error: BaseException | None = None
        self._master = -1
        self._quit = threading.Event()

    def __enter__(self) -> ConsoleReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._quit.set()
        if self._master < 0:  # nobody connected: wake the accept
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.path)
            except OSError:
                pass
        self.join(5)
        self.srv.close()
        if os.path.lexists(self.path):
            os.unlink(self.path)

    def run(self) -> None:
        try:
            conn, _ = self.srv.accept()
            if self._quit.is_set():
                conn.close()
                return
            with conn:
                self.name, self._master = recv_fd(conn)
            self._read()
        except BaseException as e:  # noqa: BLE001 - output() reports it
            self.error = e
        finally:
            if self._master >= 0:
                os.close(self._master)
                self._master = -1

    def _read(self) -> None:
        while time.monotonic() < self.deadline and not self._quit.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: every slave fd is closed
                return
            if not chunk:
                return
            self.data += chunk

    def output(self, timeout: float = 20) -> str:
        """What the terminal showed, once it was closed; \\r\\n turned into \\n."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"console {self.path}: still open after {timeout} s "
                                 f"(so far {self.data!r})")
        if self.error is not None:
            raise AssertionError(f"console {self.path}: {self.error!r}")
        return self.data.decode(errors="replace").replace("\r\n", "\n")
