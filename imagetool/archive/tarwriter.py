"""Writing an image archive as a stream of tar members with fixed owner, mode and mtime, so
saving the same images twice gives the same bytes."""

from __future__ import annotations

import io
import tarfile
from typing import IO, BinaryIO


class TarWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self._tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def dir(self, name: str) -> None:
        """Add `name/` and any missing parents, once each."""
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._tf.addfile(self._info(d + "/", tarfile.DIRTYPE, 0o755))

    def _parent(self, name: str) -> None:
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])

    def bytes(self, name: str, data: bytes) -> None:
        self._parent(name)
        self._tf.addfile(self._info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))

    def file(self, name: str, fileobj: BinaryIO, size: int) -> None:
        self._parent(name)
        self._tf.addfile(self._info(name, tarfile.REGTYPE, 0o644, size), fileobj)

    def symlink(self, name: str, target: str) -> None:
        self._parent(name)
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self._tf.addfile(ti)

    def close(self) -> None:
        self._tf.close()

    def abort(self) -> None:
        """Give up without writing the end of the archive (its file is being thrown away):
        nothing is written later either, when the objects are collected."""
        self._tf.closed = True  # type: ignore[attr-defined]  # set by TarFile, not in its stub
        stream = self._tf.fileobj
        if stream is not None and hasattr(stream, "closed"):
            stream.closed = True
