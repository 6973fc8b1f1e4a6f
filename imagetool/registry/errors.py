"""The registry client's errors: each carries one line naming the reference or registry, so
the CLI can print it as is and exit non-zero."""

from __future__ import annotations

from imagetool.errors import ImagetoolError


class RegistryError(ImagetoolError):
    """Any failure talking to a registry."""


class TransportError(RegistryError):
    """Connection refused, TLS failure, too many retries."""


class AuthError(RegistryError):
    """401/403 after authenticating, or a token endpoint that refused us."""


class NotFoundError(RegistryError):
    """404: unknown repository, tag, manifest or blob."""


class DigestMismatch(RegistryError):
    """Content whose sha256 or size differs from what its descriptor promised."""


class ManifestError(RegistryError):
    """A manifest we can't use: unknown media type, schema1, no matching platform."""


def registry_message(body: bytes) -> str:
    """The first `errors[]` entry of a distribution error body as `CODE: message`, if any."""
    import json
    try:
        errs = json.loads(body or b"{}").get("errors") or []
        e = errs[0]
        return f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
