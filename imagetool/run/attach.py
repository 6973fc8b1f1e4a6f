"""`imagetool attach`'s input side: our stdin goes to the container's monitor (its
attach.sock, stdin_relay.py) when the container was started with -i; a terminal is put in
raw mode for a -t container; the detach keys (ctrl-p,ctrl-q by default, docker's
--detach-keys syntax) are caught here: we stop and the container runs on."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

DEFAULT_KEYS = "ctrl-p,ctrl-q"


def parse_keys(text: str) -> bytes:
    """docker's --detach-keys: comma-separated single characters or ctrl-<c> (a-z, @, [,
    \\, ], ^, _); ValueError naming the flag otherwise."""
    out = bytearray()
    for part in text.split(","):
        p = part.strip()
        if len(p) == 1:
            out.append(ord(p))
        elif p.lower().startswith("ctrl-") and len(p) == 6 and \
                p[5].lower() in "abcdefghijklmnopqrstuvwxyz@[\\]^_":
            out.append(ord(p[5].upper()) & 0x1F)
        else:
            raise ValueError(f"--detach-keys: invalid key {p!r} (want a character or ctrl-X)")
    if not out:
        raise ValueError("--detach-keys: no keys given")
    return bytes(out)


class Input:
    """Copies our stdin to the attach socket in `directory` on a thread until EOF or the
    detach keys; `detached` is set by the latter."""

    def __init__(self, directory: str, keys: bytes, raw: bool) -> None:
        from imagetool.run import stdin_relay
        self.sock = stdin_relay.connect(directory)  # OSError: the container has no input
        self.keys = keys
        self.detached = threading.Event()
        self.saved: Any = None
        if raw:
            from imagetool.run.verbs_run import _raw_terminal
            self.saved = _raw_terminal()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        held = b""  # a prefix of the detach keys, sent only if the next byte breaks it
        with contextlib.suppress(OSError):
            while True:
                data = os.read(0, 4096)
                if not data:
                    break
                out = bytearray()
                for b in data:
                    held += bytes([b])
                    if self.keys.startswith(held):
                        if held == self.keys:
                            self.detached.set()
                            return
                        continue
                    out += held
                    held = b""
                if out:
                    self.sock.sendall(bytes(out))
        with contextlib.suppress(OSError):
            self.sock.shutdown(1)

    def close(self) -> None:
        from imagetool.run.verbs_run import _restore_terminal
        _restore_terminal(self.saved)
        self.saved = None
        self.sock.close()
