"""How a verb's failure reaches the user: one line on stderr and an exit status (2 for a bad
combination of arguments, 130 for Ctrl-C, 141 for a closed stdout, 1 otherwise), never a
traceback unless `--debug` asks for one. A failure that is not the user's to fix is called an
internal error, so a bug is not mistaken for bad input (ARCHITECTURE.md, "One error root per
program")."""

from __future__ import annotations

import os
import sys

from imagetool.errors import ImagetoolError

# stdlib errors that mean bad input or a failed tool, not a bug (their __module__)
_INPUT_ERROR_MODULES = ("tarfile", "zlib", "_lzma", "bz2", "zipfile", "subprocess",
                        "http.client", "json")


class UsageError(ImagetoolError):
    """Bad combination of arguments; exit status 2 like argparse."""


def report(e: BaseException, verb: str, debug: bool) -> int | None:
    """Print `e` (raised by `verb`) as one line on stderr and return the exit status; None
    when `debug` is set and `e` is not a usage error, Ctrl-C or a closed pipe: the caller
    re-raises it, traceback and all."""
    if isinstance(e, UsageError):
        text = str(e)
        print(f"imagetool: {text}" if text.startswith((f"{verb}:", "--")) else
              f"imagetool: {verb}: {text}", file=sys.stderr)
        return 2
    if isinstance(e, KeyboardInterrupt):
        print("imagetool: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, BrokenPipeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    if debug:
        return None
    if isinstance(e, Exception) and users_error(e):
        print(f"imagetool: {verb}: {e}", file=sys.stderr)
    else:  # a bug of ours: say so, without a traceback the user can't act on
        print(f"imagetool: {verb}: internal error: {type(e).__name__}: {e} "
              "(--debug shows the traceback)", file=sys.stderr)
    return 1


def users_error(e: Exception) -> bool:
    """Is `e` the user's to fix? ImagetoolError, OSError (the host said no), ValueError (some
    parsers still raise plain ones), bad-input errors of the stdlib, and error classes that
    imagetool defines without deriving from ImagetoolError yet. Anything else is a bug."""
    return (isinstance(e, (ImagetoolError, OSError, ValueError))
            or type(e).__module__ in _INPUT_ERROR_MODULES
            or type(e).__module__.startswith("imagetool."))
