"""Blob downloads that never hand over unchecked bytes: streamed into a sink (the store's
ingest: a temp file hashed on the fly), resumed with Range after a dropped connection,
committed only when size and digest match. Foreign layers come from their `urls` first.
Bodies are read into one reused 1 MiB buffer per download (no copy per chunk)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import urlsplit

from imagetool.mediatypes import is_nondistributable
from imagetool.registry.client import RegistryClient
from imagetool.registry.errors import (
    DigestMismatch,
    NotFoundError,
    TransportError,
)
from imagetool.registry.progress import Reporter
from imagetool.registry.transport import ConnectionDropped, Response, RetryPolicy

CHUNK = 1 << 20
# Enough patience for a registry restart: 0.25+0.5+1+2+4+4+4 s between attempts.
BLOB_RETRY = RetryPolicy(attempts=8, base=0.25, cap=4.0)
MAX_RESUMES = 6
FOREIGN_RETRY = RetryPolicy(attempts=2)  # a dead foreign URL falls back to the registry soon


class Sink(Protocol):
    """Where blob bytes go; the store's Ingest has exactly this shape. `offset` is non-zero
    when the sink already holds the start of the blob (a download resumed after a crash)."""

    @property
    def offset(self) -> int: ...

    def write(self, data: bytes | memoryview) -> Any: ...

    def truncate(self) -> None: ...

    def commit(self, expected_digest: str | None = None,
               expected_size: int | None = None) -> str: ...


SinkFactory = Callable[[], AbstractContextManager[Sink]]
Opener = Callable[[dict[str, str]], Response]


def label_of(desc: dict[str, Any]) -> str:
    mt = desc.get("mediaType", "")
    if "config" in mt:
        return "config"
    if "manifest" in mt:
        return "manifest"
    return "layer"


def download(client: RegistryClient, repository: str, desc: dict[str, Any],
             new_sink: SinkFactory, *, what: str, reporter: Reporter | None = None,
             retry: RetryPolicy = BLOB_RETRY, max_resumes: int = MAX_RESUMES) -> str:
    """Fetch one blob into a fresh sink and commit it; returns its digest."""
    reporter = reporter or Reporter()
    digest = desc["digest"]
    openers: list[tuple[str, Opener]] = []
    if is_nondistributable(desc.get("mediaType")):
        for url in desc.get("urls") or []:
            if url.startswith(("http://", "https://")):
                openers.append((url, _url_opener(client, url, FOREIGN_RETRY)))

    def from_registry(headers: dict[str, str]) -> Response:
        return client.request("GET", repository, f"blobs/{digest}", headers=headers,
                              stream=True, retry=retry)

    openers.append((f"{client.display}/{repository}", from_registry))
    failures: list[str] = []
    for i, (source, opener) in enumerate(openers):
        try:
            return _fetch(client, opener, desc, new_sink, what=f"{what}: blob {digest}",
                          reporter=reporter, max_resumes=max_resumes, retry=retry)
        except (NotFoundError, TransportError) as e:
            if i + 1 == len(openers):
                if failures:
                    raise type(e)(f"{e} (also tried {', '.join(failures)})") from e
                raise
            failures.append(source)
    raise AssertionError("unreachable")


def _url_opener(client: RegistryClient, url: str, retry: RetryPolicy) -> Opener:
    host = urlsplit(url).netloc

    def open_url(headers: dict[str, str]) -> Response:
        return client.transport.send("GET", url, registry=host, headers=headers, stream=True,
                                     retry=retry)
    return open_url


def _fetch(client: RegistryClient, opener: Opener, desc: dict[str, Any], new_sink: SinkFactory,
           *, what: str, reporter: Reporter, max_resumes: int, retry: RetryPolicy) -> str:
    digest, size = desc["digest"], int(desc["size"])
    drops = 0
    view = memoryview(bytearray(min(CHUNK, max(size, 1))))
    with new_sink() as sink:
        if sink.offset > size:
            sink.truncate()
        reporter.start(digest, size, label_of(desc))
        if sink.offset:
            reporter.resumed(digest, sink.offset)
        while sink.offset < size:
            offset = sink.offset
            resp = opener({"Range": f"bytes={offset}-"} if offset else {})
            if resp.status_code == 416:
                resp.close()
                raise DigestMismatch(f"{what}: shorter than its descriptor size {size}")
            client.check(resp, what, ok=(200, 206) if offset else (200,))
            if offset and (resp.status_code == 200 or not _range_starts_at(resp, offset)):
                sink.truncate()  # the server ignored our Range: start over from byte 0
                reporter.resumed(digest, 0)
                if resp.status_code == 206:
                    resp.close()
                    continue
            dropped = False
            try:
                while n := resp.readinto(view):
                    if sink.offset + n > size:
                        raise DigestMismatch(f"{what}: longer than its descriptor size {size}")
                    sink.write(view[:n])
                    reporter.advance(digest, n)
            except ConnectionDropped:
                dropped = True
            finally:
                resp.close()
            if sink.offset >= size:
                break
            if not dropped:  # the server ended the body cleanly: there is no more
                raise DigestMismatch(f"{what}: {sink.offset} bytes, shorter than its "
                                     f"descriptor size {size}")
            drops += 1
            if drops > max_resumes:
                raise TransportError(f"{what}: connection dropped {drops} times "
                                     f"(got {sink.offset} of {size} bytes)")
            reporter.resumed(digest, sink.offset)
            time.sleep(retry.delay(drops - 1))
        try:
            got = sink.commit(digest, size)
        except ValueError as e:
            raise DigestMismatch(f"{what}: {e}") from None
    reporter.done(digest)
    return got


def _range_starts_at(resp: Response, offset: int) -> bool:
    """Content-Range: bytes <start>-<end>/<total> must start where we stopped."""
    value = resp.headers.get("Content-Range", "")
    try:
        start = int(value.split()[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    return start == offset
