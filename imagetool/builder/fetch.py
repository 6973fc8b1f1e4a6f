"""ADD <http(s) URL>: the download, as BuildKit's http source makes it.

The file is named after the URL path's last element (`__unnamed__` when there is none),
written with mode 0600, and gets the Last-Modified header as its mtime (the Unix epoch when
the server sends none or an unreadable one, as BuildKit does). It is never extracted.
Proxies come from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), except for localhost
and loopback addresses, which Go's proxy rules always reach directly. Every socket operation
has a timeout, the whole download a deadline, and the size a limit, so a stuck or endless
server fails the step instead of hanging it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import posixpath
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagetool.errors import ImagetoolError

if TYPE_CHECKING:  # urllib.request and email cost ~12 ms: imported only to download
    import urllib.request

TIMEOUT = 30.0                 # seconds, for connecting and for each read
DEADLINE = 30 * 60.0           # seconds, for the whole download
MAX_BYTES = 8 << 30            # a sanity limit, not a quota
_CHUNK = 1 << 20
_ALGOS = ("sha256", "sha384", "sha512")


class FetchError(ImagetoolError):
    """A download that failed or did not verify; the message names the URL."""


@dataclass(frozen=True)
class Download:
    path: str                  # the downloaded file (mode 0600)
    name: str                  # the file name ADD gives it
    digest: str                # sha256:<hex> of its bytes
    last_modified: str         # the Last-Modified header as sent, or ""


def url_filename(url: str) -> str:
    """BuildKit's name for a downloaded file: path.Base of the URL's (decoded) path."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/")
    base = posixpath.basename(path)
    return base if base not in ("", ".") else "__unnamed__"


def _direct(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opener(url: str) -> urllib.request.OpenerDirector:
    import urllib.request
    if _direct(urllib.parse.urlsplit(url).hostname):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def fetch(url: str, directory: str, *, checksum: str | None = None) -> Download:
    """Download `url` into a new file in `directory`; verify `checksum` (`algo:hex`)."""
    algo = (checksum or "sha256:").partition(":")[0]
    if algo not in _ALGOS:
        raise FetchError(f"{url}: unsupported checksum algorithm {algo!r}")
    sha, check = hashlib.sha256(), hashlib.new(algo)
    fd_path = os.path.join(directory, f"dl-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
                                      f"-{time.monotonic_ns()}")
    deadline = time.monotonic() + DEADLINE
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"User-Agent": "imagetool-build"})
    size = 0
    try:
        with _opener(url).open(req, timeout=TIMEOUT) as resp, \
                open(fd_path, "xb") as out:
            os.fchmod(out.fileno(), 0o600)
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BYTES:
                raise FetchError(f"{url}: {length} bytes is more than the {MAX_BYTES} byte "
                                 "limit")
            last_modified = resp.headers.get("Last-Modified") or ""
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise FetchError(f"{url}: more than the {MAX_BYTES} byte limit")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: download took longer than {DEADLINE:.0f}s")
                sha.update(chunk)
                check.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as e:
        _remove(fd_path)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        _remove(fd_path)
        raise FetchError(f"{url}: {e.reason}") from None
    except (OSError, ValueError) as e:   # timeouts, resets, malformed URLs
        _remove(fd_path)
        raise FetchError(f"{url}: {e or type(e).__name__}") from None
    except FetchError:
        _remove(fd_path)
        raise
    got = f"{algo}:{check.hexdigest()}"
    if checksum is not None and got != checksum:
        _remove(fd_path)
        raise FetchError(f"{url}: checksum mismatch: want {checksum}, got {got}")
    when = _http_time(last_modified) if last_modified else None
    os.utime(fd_path, (when or 0, when or 0))
    return Download(path=fd_path, name=url_filename(url), digest="sha256:" + sha.hexdigest(),
                    last_modified=last_modified)


def _http_time(value: str) -> float | None:
    try:
        import email.utils
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
