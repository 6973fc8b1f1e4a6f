"""Error types whose text is shown to users (and to shims, which match on some words)."""


class PyruncError(Exception):
    """A failure with a one-line, user-facing message; the CLI prints it and exits non-zero."""


class ConfigError(PyruncError):
    """config.json is wrong; the message names the JSON path of the bad field."""

    def __init__(self, path: str, problem: str, file: str = "config.json") -> None:
        self.path = path
        super().__init__(f"{file}: {path}: {problem}" if path else f"{file}: {problem}")


class NotExistError(PyruncError):
    """Unknown container; shims look for the words "does not exist"."""

    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} does not exist")


class NotRunningError(PyruncError):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} is not running: container not running")
