"""The sync channel between `create` and the container init: JSON lines over two pipes.

Messages: parent->child {"type": "go", "state": {...}}, {"type": "hooks-done"};
child->parent {"type": "hooks"}, {"type": "ready"}, {"type": "error", "msg": "..."}.
An EOF means the other side died; the init treats it as "abort".
"""

from __future__ import annotations

import os

from runtime import jsonio

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """(parent end, child end); every fd is close-on-exec."""
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        return cls(c2p_r, p2c_w), cls(p2c_r, c2p_w)

    def send(self, msg: dict[str, Any]) -> None:
        data = jsonio.dumps(msg).encode() + b"\n"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def recv(self, idle: Callable[[], None] | None = None,
             every: float = 0.25) -> dict[str, Any] | None:
        """The next message; None at EOF. With `idle`, it is called every `every` seconds
        of silence (it may raise to stop waiting)."""
        while b"\n" not in self._buf:
            if idle is not None:
                import select
                poller = select.poll()
                poller.register(self.rfd, select.POLLIN)
                while not poller.poll(int(every * 1000)):
                    idle()
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return jsonio.loads(line)

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.rfd = self.wfd = -1
