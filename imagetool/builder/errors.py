"""The build's error type, and how it names the Dockerfile line."""

from __future__ import annotations

from imagetool.errors import ImagetoolError

from . import dockerfile as df
from .plan import BuildPlan


class BuildError(ImagetoolError):
    """A build failed; the message names Dockerfile:LINE where there is one."""


def fail(p: BuildPlan, ins: df.Instruction | None, msg: str) -> BuildError:
    where = f"{p.filename}:{ins.line}: " if ins is not None else f"{p.filename}: "
    return BuildError(where + msg)
