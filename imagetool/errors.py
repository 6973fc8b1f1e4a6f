"""The root of imagetool's errors: every error a user can cause (a bad reference, a missing
image, a refused registry request, a broken Dockerfile, an unsafe layer...) derives from
`ImagetoolError`, so the command line tells them apart from programming errors. Classes
that were ValueErrors stay ValueErrors too, for callers that catch those."""

from __future__ import annotations


class ImagetoolError(Exception):
    """An error for the user: its text is the whole message, printed on one line."""
