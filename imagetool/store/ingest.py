"""Writing one blob: bytes go to a temp file under <root>/ingest/, are hashed on the way, and
only a verified, fsynced file is renamed into blobs/. Each ingest file is flocked while its
writer lives, so GC can tell a live writer from the leftovers of a crashed one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from typing import Protocol

from imagetool import digest as dg
from imagetool.errors import ImagetoolError

TEMP_PREFIX = "tmp-"      # anonymous: removed by GC as soon as no writer holds it
RESUME_PREFIX = "resume-"  # keyed by the digest it should become: kept for a while to resume


class IngestError(ImagetoolError, ValueError):
    """The written bytes are not what the caller said they would be."""


class BlobTarget(Protocol):
    """What an ingest needs of its store (imagetool.store.Store is one): where to write
    temp files and where a blob lives. Typed this way so ingest.py does not import the
    store package that imports it."""

    ingest_dir: str

    def blob_path(self, digest: str) -> str: ...


class Ingest:
    """A context manager for one blob. `write` appends; `offset` is how much is already there
    (non-zero when a keyed ingest resumes a crashed download); `commit` verifies and publishes.
    Leaving the context without commit removes the temp file."""

    def __init__(self, store: BlobTarget, key: str | None = None) -> None:
        self._store = store
        os.makedirs(store.ingest_dir, exist_ok=True)
        self._algo = "sha256"
        fd = -1
        if key is not None:
            self._algo, hexpart = dg.parse(key)
            path = os.path.join(store.ingest_dir, f"{RESUME_PREFIX}{self._algo}-{hexpart}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another writer resumes it: write our own copy instead
                os.close(fd)
                fd = -1
        if fd < 0:
            fd, path = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=store.ingest_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.path = path
        self._f = os.fdopen(fd, "r+b")
        self._h = hashlib.new(self._algo)
        self.size = 0
        while chunk := self._f.read(dg.CHUNK):  # resume: account for what is already there
            self._h.update(chunk)
            self.size += len(chunk)
        self._done = False

    @property
    def offset(self) -> int:
        """Bytes already written: where a resumed download continues (HTTP Range start)."""
        return self.size

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError(f"{self.path}: ingest already finished")
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)
        return len(data)

    def truncate(self) -> None:
        """Start over (a server that ignored the Range request sends everything again)."""
        self._f.seek(0)
        self._f.truncate()
        self._h = hashlib.new(self._algo)
        self.size = 0

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify size and digest, publish the blob, return its digest. On mismatch the temp
        file is removed and IngestError names both values."""
        if self._done:
            raise ValueError(f"{self.path}: ingest already finished")
        try:
            if expected_size is not None and self.size != expected_size:
                raise IngestError(f"blob {expected_digest or '(no digest given)'}: got "
                                  f"{self.size} bytes, expected {expected_size}")
            self._f.flush()
            if expected_digest is not None and dg.parse(expected_digest)[0] != self._algo:
                got, _ = dg.of_file(self.path, dg.parse(expected_digest)[0])
            else:
                got = f"{self._algo}:{self._h.hexdigest()}"
            if expected_digest is not None and got != expected_digest:
                raise IngestError(f"blob {expected_digest}: content hashes to {got}")
            os.fsync(self._f.fileno())
            os.fchmod(self._f.fileno(), 0o644)
            dest = self._store.blob_path(got)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.exists(dest):
                os.utime(dest)  # already there: keep the old file, mark it freshly wanted
                os.unlink(self.path)
            else:
                os.rename(self.path, dest)
            self._done = True
            self._f.close()
            return got
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Throw the temp file away (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._f.close()

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
