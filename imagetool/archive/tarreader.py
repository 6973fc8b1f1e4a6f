"""Random access to the members of an image archive by path, so loaders can read manifest.json
or blobs/sha256/<hex> in any order. Links are followed only to members of the same archive;
paths that climb out of it are ignored. Compressed or piped input is first copied, plain,
into an unnamed temp file next to the store (the space the blobs will need anyway)."""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from imagetool import compression
from imagetool.errors import ImagetoolError

MAX_HOPS = 40


class ArchiveError(ImagetoolError, ValueError):
    """An archive that is not what it claims; the message names the archive and the member."""


def norm(name: str) -> str | None:
    """A member path relative to the archive root, or None if it would leave the archive."""
    p = posixpath.normpath("/" + name.lstrip("/"))[1:] if name else ""
    if not p or p == "." or p.startswith(".."):
        return None
    return p


class TarReader:
    def __init__(self, fileobj: BinaryIO, label: str) -> None:
        self.label = label
        try:
            self._tf = tarfile.open(fileobj=fileobj, mode="r:")
            self._members: dict[str, tarfile.TarInfo] = {}
            for m in self._tf:
                key = norm(m.name)
                if key is not None:
                    self._members[key] = m
        except (tarfile.TarError, EOFError) as e:
            raise ArchiveError(f"{label}: not a tar archive ({e})") from None

    def names(self) -> list[str]:
        return list(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        key = norm(name)
        for _ in range(MAX_HOPS):
            if key is None or key not in self._members:
                return None
            m = self._members[key]
            if m.issym():
                base = posixpath.dirname(key)
                key = norm(m.linkname if m.linkname.startswith("/")
                           else posixpath.join(base, m.linkname))
            elif m.islnk():
                key = norm(m.linkname)
            else:
                return m if m.isreg() else None
        return None

    def has(self, name: str) -> bool:
        return self._resolve(name) is not None

    def size(self, name: str) -> int:
        m = self._resolve(name)
        if m is None:
            raise ArchiveError(f"{self.label}: no file {name!r} in the archive")
        return m.size

    def open(self, name: str) -> BinaryIO:
        m = self._resolve(name)
        if m is None:
            raise ArchiveError(f"{self.label}: no file {name!r} in the archive")
        f = self._tf.extractfile(m)
        assert f is not None
        return f  # type: ignore[return-value]

    def read(self, name: str, limit: int) -> bytes:
        if self.size(name) > limit:
            raise ArchiveError(f"{self.label}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def real_name(self, name: str) -> str:
        """The regular member `name` leads to (identical layers are often symlinked)."""
        m = self._resolve(name)
        if m is None:
            raise ArchiveError(f"{self.label}: no file {name!r} in the archive")
        return norm(m.name) or name


@contextlib.contextmanager
def open_archive(source: str | BinaryIO, label: str, spool_dir: str | None) -> Iterator[TarReader]:
    """A TarReader over a path or stream, plain or compressed (docker load takes both)."""
    own = None
    try:
        if isinstance(source, str):
            try:
                own = open(source, "rb")  # noqa: SIM115 - closed in finally
            except OSError as e:
                raise ArchiveError(f"{label}: {e.strerror}") from None
            src: BinaryIO = own
        else:
            src = source
        seekable = False
        with contextlib.suppress(AttributeError, OSError):
            seekable = src.seekable()
        head = b""
        if seekable:
            pos = src.tell()
            head = src.read(8)
            src.seek(pos)
        kind = compression.sniff_compression(head) if seekable else None
        if seekable and kind == "none":
            yield TarReader(src, label)
            return
        with tempfile.TemporaryFile(dir=spool_dir) as tmp:
            try:
                _kind, plain = compression.open_any(src)
                shutil.copyfileobj(plain, tmp, 1 << 20)
            except Exception as e:  # each decompressor has its own error types
                raise ArchiveError(f"{label}: cannot decompress ({e})") from None
            tmp.seek(0)
            yield TarReader(tmp, label)  # type: ignore[arg-type]
    finally:
        if own is not None:
            own.close()
