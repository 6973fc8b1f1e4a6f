"""Image references with Docker's normalisation rules, so `alpine`, `docker.io/alpine` and
`index.docker.io/library/alpine:latest` all name the same image in the store and on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagetool.errors import ImagetoolError

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

# The grammar of distribution/reference, kept to what a client needs.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?\Z|\[[0-9a-fA-F:.]+\](?::[0-9]+)?\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}\Z")
NAME_MAX = 255


class ReferenceError(ImagetoolError, ValueError):
    """A reference that Docker's grammar would refuse; the message names it."""


@dataclass(frozen=True)
class Reference:
    """registry + repository + (tag and/or digest); always in normalised form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, e.g. docker.io/library/alpine."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host that serves the registry API (docker.io is served by registry-1)."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def target(self) -> str:
        """What to ask the manifests endpoint for: the digest wins over the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def familiar(self) -> str:
        """The short form Docker prints: `alpine:latest`, `user/app:1`, `host:5000/x:y`."""
        repo = self.repository
        if self.registry == DEFAULT_REGISTRY:
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/"):]
            return repo + self._suffix()
        return f"{self.registry}/{repo}{self._suffix()}"

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag else ""
        return s + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _is_registry(component: str) -> bool:
    return ("." in component or ":" in component or component == "localhost"
            or component != component.lower())


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise `text`; with default_tag, a bare name gets `:latest`."""
    if not text or text != text.strip():
        raise ReferenceError(f"invalid reference {text!r}: empty or surrounded by spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(f"invalid reference {text!r}: bad digest {digest!r}")
        if digest.startswith("sha256:") and not _SHA256.match(digest):
            raise ReferenceError(f"invalid reference {text!r}: sha256 digest needs 64 hex digits")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise ReferenceError(f"invalid reference {text!r}: bad tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and _is_registry(first):
        registry, path = first, remainder
        if not _DOMAIN.match(registry):
            raise ReferenceError(f"invalid reference {text!r}: bad registry {registry!r}")
    else:
        registry, path = DEFAULT_REGISTRY, rest
    if registry in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if path != path.lower():
        raise ReferenceError(f"invalid reference {text!r}: repository name must be lowercase")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            raise ReferenceError(f"invalid reference {text!r}: bad path component {comp!r}")
    if len(f"{registry}/{path}") > NAME_MAX:
        raise ReferenceError(f"invalid reference {text!r}: name longer than {NAME_MAX}")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def normalize(text: str) -> str:
    """The full normalised string form, the name images carry in the store."""
    return str(parse(text))
