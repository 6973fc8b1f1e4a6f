"""`imagetool --debug`'s log: debug records through the standard `logging` module (loggers
`imagetool.<area>`, e.g. `imagetool.registry` for each HTTP exchange, `imagetool.build` for
each cache decision), to stderr. `logging` is imported by `enable()` only, so a command without
--debug pays nothing for it: `debug()` is one global check until then."""

from __future__ import annotations

from typing import Any

_root: Any = None  # the `imagetool` logging.Logger once enable() ran


def enable() -> None:
    """Send imagetool's debug records to stderr (`imagetool DEBUG <area>: <message>`)."""
    global _root
    import logging
    root = logging.getLogger("imagetool")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("imagetool DEBUG %(area)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    root.propagate = False
    _root = root


def enabled() -> bool:
    return _root is not None


def debug(area: str, message: str, *args: object) -> None:
    """Log `message % args` under imagetool.<area>, when --debug turned logging on."""
    if _root is not None:
        _root.getChild(area).debug(message, *args, extra={"area": area})
