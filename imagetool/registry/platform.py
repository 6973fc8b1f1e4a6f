"""The registry's view of imagetool/platform.py: the same Platform type and normalisation,
with a bad platform text or a missing platform raised as ManifestError (what the registry
client's callers catch)."""

from __future__ import annotations

from imagetool import platform as _platform
from imagetool.platform import (  # noqa: F401  (this module's API)
    ATTESTATION_KEY,
    Platform,
    PlatformError,
    host,
    is_attestation,
    normalize,
    of_descriptor,
)
from imagetool.registry.errors import ManifestError


def parse(text: str) -> Platform:
    """os/arch[/variant]; ManifestError otherwise."""
    try:
        return _platform.parse(text)
    except PlatformError as e:
        raise ManifestError(str(e)) from None


def select(manifests: list[dict], want: Platform, where: str) -> dict:
    """imagetool.platform.select, with ManifestError when no entry fits."""
    try:
        return _platform.select(manifests, want, where)
    except PlatformError as e:
        raise ManifestError(str(e)) from None
