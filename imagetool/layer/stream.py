"""The decompress/digest stream: a layer blob -> its uncompressed tar, read by exact lengths.

A producer thread reads the blob (a store blob reader checks its digest at EOF), decompresses
it (isal gzip, zstd, or none) and hashes the result against the diff_id; these release the
GIL, so the consumer parses headers and writes files meanwhile. File data goes from the
decompressor's chunk to os.write without a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from imagetool import compression

from .base import LayerError

CHUNK = 1 << 20


class _Producer(threading.Thread):
    """Reads `raw`, decompresses and hashes it, and hands 1 MiB chunks to the consumer."""

    def __init__(self, raw: BinaryIO, label: str, diff_id: str | None) -> None:
        super().__init__(name=f"layer-reader {label}", daemon=True)
        self.raw = raw
        self.label = label
        self.diff_id = diff_id
        self.q: queue.Queue[Any] = queue.Queue(maxsize=16)
        self.stop = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            kind, plain = compression.open_any(self.raw)
            h = hashlib.sha256() if self.diff_id else None
            while True:
                chunk = plain.read(CHUNK)
                if not chunk:
                    break
                if h is not None:
                    h.update(chunk)
                if not self._put(chunk):
                    return
            verify_rest = getattr(self.raw, "verify_rest", None)
            if verify_rest is not None:  # a store blob: the digest check runs at its EOF
                verify_rest()
            if h is not None and self.diff_id and f"sha256:{h.hexdigest()}" != self.diff_id:
                raise LayerError(f"{self.label}: uncompressed content hashes to "
                                 f"sha256:{h.hexdigest()}, not its diff_id {self.diff_id}")
            self._put(None)
        except BaseException as e:  # handed to the consumer, raised there
            if isinstance(e, (OSError, EOFError, ValueError)) and \
                    not isinstance(e, LayerError):
                e = LayerError(f"{self.label}: cannot read the layer ({e})")
            self._put(e)


class Stream:
    """The uncompressed tar as exact-length reads, copies to fds and skips."""

    def __init__(self, producer: _Producer, label: str) -> None:
        self._p = producer
        self._label = label
        self._buf = b""
        self._pos = 0
        self.eof = False

    def _next(self) -> bool:
        if self.eof:
            return False
        item = self._p.q.get()
        if item is None:
            self.eof = True
            return False
        if isinstance(item, BaseException):
            self.eof = True
            raise item
        self._buf, self._pos = item, 0
        return True

    def read(self, n: int) -> bytes:
        pos, buf = self._pos, self._buf
        if len(buf) - pos >= n:
            self._pos = pos + n
            return buf[pos:pos + n]
        parts = [buf[pos:]]
        need = n - (len(buf) - pos)
        self._pos = len(buf)
        while need and self._next():
            take = min(need, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            need -= take
        return b"".join(parts)

    def truncated(self) -> LayerError:
        return LayerError(f"{self._label}: the tar archive is truncated")

    def copy(self, fd: int, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._next():
                    raise self.truncated()
                continue
            take = n if n < avail else avail
            view = memoryview(self._buf)[self._pos:self._pos + take]
            while view:
                view = view[os.write(fd, view):]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._next():
                    raise self.truncated()
                continue
            take = n if n < avail else avail
            self._pos += take
            n -= take

    def drain(self) -> None:
        """Consume the rest (end-of-archive padding) so the digest checks run and report."""
        while self._next():
            pass


@contextlib.contextmanager
def pipeline(raw: BinaryIO, label: str, diff_id: str | None) -> Iterator[Stream]:
    p = _Producer(raw, label, diff_id)
    p.start()
    s = Stream(p, label)
    try:
        yield s
        s.drain()
    finally:
        p.stop.set()
        while p.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                p.q.get(timeout=0.05)
        p.join()

