"""Pieces that keep building imagetool's argparse parser cheap (a command line runs one verb,
and an ordinary user's command starts twice): a stand-in for the parsers of verbs not being
run, and argparse's gettext lookups remembered within the process. argparse is imported only
when a parser is built."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (it costs ~1 ms)
if TYPE_CHECKING:
    from typing import Any


class Unused:
    """Stands in for the parser of a verb this command line does not run: takes any call."""

    def __getattr__(self, name: str) -> Any:
        return self._any

    def _any(self, *_a: Any, **_k: Any) -> Unused:
        return self


def remember_translations() -> None:
    """argparse asks gettext for each message of each parser and argument, and gettext looks
    for a catalog on disk every time (~70 us a call, ~14 ms for imagetool's parser); within
    one process the answer for a message cannot change, so keep it."""
    import argparse
    gettext = vars(argparse)["_"]  # a private name of argparse's, not in its stubs
    if not hasattr(gettext, "cache_info"):
        import functools
        vars(argparse)["_"] = functools.lru_cache(maxsize=None)(gettext)
