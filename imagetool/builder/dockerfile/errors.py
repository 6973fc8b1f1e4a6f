"""The front end's errors and defaults (shared by every module of the package)."""

from __future__ import annotations

from imagetool.errors import ImagetoolError

DEFAULT_FILENAME = "Dockerfile"
DEFAULT_ESCAPE = "\\"


class DockerfileError(ImagetoolError, ValueError):
    """A Dockerfile Docker would refuse; `str()` is `Dockerfile:LINE: what is wrong`."""

    def __init__(self, message: str, filename: str = DEFAULT_FILENAME,
                 line: int | None = None, end_line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.end_line = end_line

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.filename}: {self.message}"
        return f"{self.filename}:{self.line}: {self.message}"


class InstructionError(ImagetoolError, ValueError):
    """An error found while building one instruction; the parser attaches file and line."""
