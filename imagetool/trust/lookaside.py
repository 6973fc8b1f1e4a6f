"""Signature lookaside stores, configured as containers-registries.d(5) says: every *.yaml file
of the directory (default /etc/containers/registries.d) may set `default-docker:` and
`docker: {<namespace>: ...}` entries with `lookaside` (read) and `lookaside-staging` (write)
URLs (the older names `sigstore` / `sigstore-staging` too). The most specific namespace wins.
Signature N (from 1) of manifest D of repository path P lives at
<url>/<P>@<algo>=<hex>/signature-<N>. Reading takes file://, http:// and https:// URLs;
writing only file://, as containers/image does.

The files are a small YAML subset (block mappings, scalars, comments), parsed here."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from imagetool.reference import Reference
from imagetool.trust.errors import TrustError

DEFAULT_DIR = "/etc/containers/registries.d"
MAX_SIGNATURES = 128
MAX_SIGNATURE_SIZE = 4 << 20


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_yaml(text: str, what: str) -> dict:
    """Block mappings only: `key: value` and `key:` opening a nested mapping."""
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not body.strip() or body.strip() == "---":
            continue
        indent = len(body) - len(body.lstrip(" "))
        text = body.strip()
        cut = text.find(": ")  # `host:5000:` and `file:///x` keep their colons
        if cut < 0 and text.endswith(":"):
            cut = len(text) - 1
        key, value = (text[:cut], text[cut + 1:]) if cut > 0 else ("", "")
        if not key:
            raise TrustError(f"{what}:{n}: want `key: value` (only YAML mappings are read)")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        key = _scalar(key)
        if value.strip() and value.strip() not in ("{}", "~", "null"):
            parent[key] = _scalar(value)
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


@dataclass(frozen=True)
class Config:
    """The merged registries.d configuration."""

    default: dict[str, str]
    namespaces: dict[str, dict[str, str]]

    @classmethod
    def load(cls, directory: str | None = None) -> Config:
        d = directory or DEFAULT_DIR
        default: dict[str, str] = {}
        spaces: dict[str, dict[str, str]] = {}
        if directory and not os.path.isdir(directory):
            raise TrustError(f"--registries.d {directory}: not a directory")
        names = sorted(os.listdir(d)) if os.path.isdir(d) else []
        for name in names:
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(d, name)
            with open(path) as f:
                doc = parse_yaml(f.read(), path)
            if isinstance(doc.get("default-docker"), dict):
                default = doc["default-docker"]
            for ns, entry in (doc.get("docker") or {}).items():
                if not isinstance(entry, dict):
                    raise TrustError(f"{path}: docker.{ns} must be a mapping")
                if ns in spaces:
                    raise TrustError(f"{path}: docker.{ns} is configured twice")
                spaces[ns] = entry
        return cls(default, spaces)

    def entry(self, ref: Reference) -> dict[str, str]:
        """The most specific namespace's settings for `ref`, else default-docker's."""
        name = ref.name
        best, best_len = self.default, -1
        for ns, e in self.namespaces.items():
            if (name == ns or name.startswith(ns + "/")) and len(ns) > best_len:
                best, best_len = e, len(ns)
        return best

    def read_url(self, ref: Reference) -> str | None:
        e = self.entry(ref)
        return e.get("lookaside") or e.get("sigstore")

    def write_url(self, ref: Reference) -> str | None:
        e = self.entry(ref)
        return (e.get("lookaside-staging") or e.get("sigstore-staging")
                or e.get("lookaside") or e.get("sigstore"))


def signature_url(base: str, ref: Reference, digest: str, index: int) -> str:
    algo, _, hexd = digest.partition(":")
    return f"{base.rstrip('/')}/{ref.repository}@{algo}={hexd}/signature-{index + 1}"


def _file_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise TrustError(f"lookaside {url}: file URLs must be local")
    return urllib.parse.unquote(parts.path)


def read_signatures(base: str, ref: Reference, digest: str) -> list[bytes]:
    """Signatures 1, 2, ... until the first that is missing."""
    out: list[bytes] = []
    scheme = urllib.parse.urlsplit(base).scheme
    if scheme not in ("file", "http", "https"):
        raise TrustError(f"lookaside {base}: unsupported URL scheme {scheme!r}")
    for i in range(MAX_SIGNATURES):
        url = signature_url(base, ref, digest, i)
        if scheme == "file":
            try:
                with open(_file_path(url), "rb") as f:
                    out.append(f.read(MAX_SIGNATURE_SIZE))
            except FileNotFoundError:
                break
            continue
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                out.append(r.read(MAX_SIGNATURE_SIZE))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                break
            raise TrustError(f"lookaside {url}: HTTP {e.code}") from None
        except OSError as e:
            raise TrustError(f"lookaside {url}: {e}") from None
    return out


def write_signature(base: str, ref: Reference, digest: str, sig: bytes) -> str:
    """Store `sig` as the next free signature-N (an identical one is not added twice)."""
    if urllib.parse.urlsplit(base).scheme != "file":
        raise TrustError(f"lookaside-staging {base}: only file:// URLs can be written")
    for i in range(MAX_SIGNATURES):
        path = _file_path(signature_url(base, ref, digest, i))
        try:
            with open(path, "rb") as f:
                if f.read() == sig:
                    return path
            continue
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path), exist_ok=True)
        from imagetool.atomicfile import atomic_file
        with atomic_file(path) as f:
            f.write(sig)
        return path
    raise TrustError(f"{ref.name}@{digest}: {MAX_SIGNATURES} signatures already")
