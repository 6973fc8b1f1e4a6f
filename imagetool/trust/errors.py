"""The one error type of imagetool.trust: its message is the one line the user sees."""

from __future__ import annotations

from imagetool.errors import ImagetoolError


class TrustError(ImagetoolError):
    """A refusal or bad input (key, signature, policy, artifact); the message names it."""


class VerifyError(TrustError):
    """A signature that does not verify, or no signature that could."""
