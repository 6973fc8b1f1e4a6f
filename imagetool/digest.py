"""Content digests: parse and check them before they become paths, hash bytes and files, and
read a blob through a verifier that fails at EOF when size or digest is wrong (umoci's
`verified_blob`), so nobody consumes unchecked content without noticing."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from imagetool.errors import ImagetoolError

CHUNK = 1 << 20
# The algorithms we can verify, with the exact hex length the spec demands for each.
_HEX_LEN = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)\Z")


class DigestError(ImagetoolError, ValueError):
    """A malformed digest, or content that does not match the digest or size it claims."""


def parse(digest: str) -> tuple[str, str]:
    """Split `sha256:<hex>` into (algorithm, hex); refuse anything that could not be a safe
    file name or that we cannot verify."""
    m = _DIGEST_RE.match(digest) if isinstance(digest, str) else None
    if not m:
        raise DigestError(f"invalid digest {digest!r}: want <algorithm>:<lowercase hex>")
    algo, hexpart = m.group(1), m.group(2)
    want = _HEX_LEN.get(algo)
    if want is None:
        raise DigestError(f"invalid digest {digest!r}: unsupported algorithm {algo!r}")
    if len(hexpart) != want:
        raise DigestError(f"invalid digest {digest!r}: {algo} needs {want} hex digits")
    return algo, hexpart


def hasher(digest: str) -> hashlib._Hash:
    """A fresh hash object of the algorithm `digest` uses."""
    return hashlib.new(parse(digest)[0])


def of_bytes(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def of_file(path: str, algo: str = "sha256") -> tuple[str, int]:
    """(digest, size) of a file, read in chunks."""
    h = hashlib.new(algo)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return f"{algo}:{h.hexdigest()}", size


def check_bytes(data: bytes, digest: str, size: int | None = None, what: str = "blob") -> None:
    """Raise DigestError unless `data` has exactly this digest (and size, when given)."""
    algo, _ = parse(digest)
    if size is not None and len(data) != size:
        raise DigestError(f"{what} {digest}: size {len(data)} does not match expected {size}")
    got = of_bytes(data, algo)
    if got != digest:
        raise DigestError(f"{what} {digest}: content hashes to {got}")


class VerifiedReader:
    """A read-only stream over `raw` that hashes what passes through and, at EOF, raises
    DigestError if the digest or size differ. Reading past `size` fails at once, so an
    oversized blob cannot fill a disk before the check."""

    def __init__(self, raw: BinaryIO, digest: str, size: int | None = None,
                 what: str = "blob") -> None:
        self._raw = raw
        self.digest = digest
        self.size = size
        self._what = what
        self._h = hasher(digest)
        self._n = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if n is None or n < 0:
            parts = []
            while chunk := self._raw.read(CHUNK):
                parts.append(chunk)
                self._account(chunk)
            data = b"".join(parts)
        else:
            data = self._raw.read(n)
            self._account(data)
        if not data or n is None or n < 0:
            self._finish()
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def _account(self, data: bytes) -> None:
        self._h.update(data)
        self._n += len(data)
        if self.size is not None and self._n > self.size:
            raise DigestError(f"{self._what} {self.digest}: longer than its size {self.size}")

    def _finish(self) -> None:
        self._done = True
        if self.size is not None and self._n != self.size:
            raise DigestError(f"{self._what} {self.digest}: size {self._n} does not match "
                              f"expected {self.size}")
        got = f"{parse(self.digest)[0]}:{self._h.hexdigest()}"
        if got != self.digest:
            raise DigestError(f"{self._what} {self.digest}: content hashes to {got}")

    def verify_rest(self) -> None:
        """Drain whatever is left so the EOF check runs even if the consumer stopped early."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
