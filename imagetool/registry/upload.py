"""Blob uploads (distribution spec "push"): HEAD first to skip what the repository has,
cross-repository mount when we know a repository holding the blob, then a monolithic
POST+PUT for small blobs or PATCH chunks + PUT for big ones. The final digest is checked."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlencode, urljoin

from imagetool.registry.auth import repo_scope
from imagetool.registry.client import RegistryClient
from imagetool.registry.errors import DigestMismatch, RegistryError
from imagetool.registry.progress import Reporter

CHUNK_SIZE = 16 << 20  # blobs above this go up in PATCH chunks of this size
PUSH = ("pull", "push")


def blob_exists(client: RegistryClient, repository: str, digest: str) -> bool:
    resp = client.request("HEAD", repository, f"blobs/{digest}", actions=PUSH)
    with resp:
        if resp.status_code == 404:
            return False
        client.check(resp, f"{client.display}/{repository}: blob {digest}")
        return True


def _location(client: RegistryClient, resp: Any, what: str) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise RegistryError(f"{what}: registry sent no upload Location")
    return urljoin(client.base_url() + "/", loc)


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


class _ProgressFile:
    """A file body that reports bytes as the HTTP library reads them."""

    def __init__(self, path: str, offset: int, length: int, key: str, reporter: Reporter) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by the transport after sending
        self._f.seek(offset)
        self._left = length
        self._len = length
        self._key = key
        self._reporter = reporter

    def __len__(self) -> int:
        return self._len

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        self._reporter.advance(self._key, len(data))
        return data

    def close(self) -> None:
        self._f.close()


def upload_blob(client: RegistryClient, repository: str, desc: dict[str, Any], path: str, *,
                what: str, reporter: Reporter | None = None, chunk_size: int = CHUNK_SIZE,
                mount_from: tuple[str, ...] = ()) -> str:
    """Make the blob at `path` exist in `repository`; returns exists|mounted|uploaded."""
    reporter = reporter or Reporter()
    digest, size = desc["digest"], int(desc["size"])
    label = "layer" if "layer" in desc.get("mediaType", "") else "blob"
    if os.path.getsize(path) != size:
        raise DigestMismatch(f"{what}: local blob {digest} is {os.path.getsize(path)} bytes, "
                             f"its descriptor says {size}")
    if blob_exists(client, repository, digest):
        reporter.skipped(digest, label, "already exists")
        return "exists"
    location = None
    for source in mount_from:
        if source == repository:
            continue
        resp = client.request("POST", repository,
                              "blobs/uploads/?" + urlencode({"mount": digest, "from": source}),
                              actions=PUSH, extra_scopes=(repo_scope(source, ("pull",)),))
        with resp:
            if resp.status_code == 201:
                reporter.skipped(digest, label, f"mounted from {source}")
                return "mounted"
            if resp.status_code == 202:
                location = _location(client, resp, what)  # not mountable: upload here instead
                break
            if resp.status_code not in (401, 403, 404):
                client.check(resp, what, ok=(201, 202))
    if location is None:
        resp = client.request("POST", repository, "blobs/uploads/", actions=PUSH)
        client.check(resp, f"{what}: start upload of {digest}", ok=(202,))
        with resp:
            location = _location(client, resp, what)
    reporter.start(digest, size, label)
    if size <= chunk_size:
        final = _with_query(location, digest=digest)
        body: Callable[[], IO[bytes]] = lambda: _ProgressFile(  # noqa: E731
            path, 0, size, digest, reporter)
        resp = client.request("PUT", repository, final, actions=PUSH, body=body,
                              headers={"Content-Type": "application/octet-stream"})
    else:
        offset = 0
        while offset < size:
            n = min(chunk_size, size - offset)
            start = offset
            resp = client.request(
                "PATCH", repository, location, actions=PUSH,
                body=lambda s=start, k=n: _ProgressFile(path, s, k, digest, reporter),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{start}-{start + n - 1}",
                         "Content-Length": str(n)})
            client.check(resp, f"{what}: upload chunk {start}-{start + n - 1} of {digest}",
                         ok=(202,))
            with resp:
                location = _location(client, resp, what)
            offset += n
        resp = client.request("PUT", repository, _with_query(location, digest=digest),
                              actions=PUSH, headers={"Content-Length": "0"}, body=b"")
    client.check(resp, f"{what}: upload of {digest}", ok=(201, 204))
    with resp:
        got = resp.headers.get("Docker-Content-Digest")
    if got and got != digest:
        raise DigestMismatch(f"{what}: registry computed {got} for our {digest}")
    reporter.done(digest)
    return "uploaded"
