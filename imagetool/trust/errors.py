"""The one error type of imagetool.trust: its message is the one line the user sees."""

from __future__ import annotations


class TrustError(Exception):
    """A refusal or bad input (key, signature, policy, artifact); the message names it."""


class VerifyError(TrustError):
    """A signature that does not verify, or no signature that could."""
