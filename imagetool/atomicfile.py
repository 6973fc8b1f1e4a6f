"""Files that appear whole or not at all: written to a temp file beside the target, fsynced,
given their mode, then renamed over it. Readers see the old file or the new one, never half,
and a failure (or Ctrl-C) leaves only the old file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_file(path: str, mode: int = 0o644, text: bool = False, sync_dir: bool = False,
                durable: bool = True) -> Iterator[IO[Any]]:
    """Yield a file to write `path`'s new content to; on a clean exit it replaces `path`.
    sync_dir also fsyncs the directory, so the rename itself survives a crash; durable=False
    skips the fsync for files that need not outlive a crash (a container's scratch files)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        f: IO[Any] = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
