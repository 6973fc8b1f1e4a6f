"""The build context side of COPY/ADD: which context files a source names, and their records.

A source names a file or directory (a directory's contents are copied, recursively) or is a
wildcard pattern (Go filepath.Match per path component); .dockerignore hides files; symlinks
resolve as if the context were `/`, so no path leaves it. cachekey.py hashes these records
into step keys; plan.py checks sources exist; copy_step.py and run_mounts.py read them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from imagetool import digest as _digest
from imagetool.errors import ImagetoolError
from runtime.linux.inroot import InRoot, TooManyLinks

from .dockerignore import DockerIgnore, go_clean, go_match, has_wildcards

__all__ = ["SourceError", "check_sources", "context_records", "entry_record", "file_digest",
           "has_wildcards", "resolve_in_root", "roots"]

_CHUNK = 1 << 20


class SourceError(ImagetoolError, ValueError):
    """A COPY/ADD source that isn't in the build context (missing or .dockerignore'd)."""


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content, as `sha256:<hex>`."""
    return _digest.of_file(os.fspath(path))[0]


def resolve_in_root(root: str, rel: str, *, follow_last: bool = True) -> str:
    """`rel` inside `root` with symlinks resolved as if `root` were `/` (a link can't lead
    out of the context). Returns the resolved path relative to root ('' for the root).
    The shared resolver's clamp mode (runtime/linux/inroot.py) after a lexical clean of
    `rel`; a component that can't be lstat'ed is kept as a name (callers report)."""
    try:
        return InRoot(root, tolerate=(OSError, ValueError)).walk(
            go_clean("/" + rel).split("/"), follow_last=follow_last)
    except TooManyLinks:
        raise SourceError(f"{rel}: too many levels of symbolic links") from None


def entry_record(rel: str, full: str, st: os.stat_result, with_mtime: bool,
                  memo: dict[tuple[Any, ...], str] | None) -> list[Any]:
    mode = stat.S_IMODE(st.st_mode)
    rec: list[Any]
    if stat.S_ISDIR(st.st_mode):
        rec = [rel, "d", mode]
    elif stat.S_ISLNK(st.st_mode):
        rec = [rel, "l", mode, os.readlink(full)]
    elif stat.S_ISREG(st.st_mode):
        key = (full, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = memo.get(key) if memo is not None else None
        if digest is None:
            digest = file_digest(full)
            if memo is not None:
                memo[key] = digest
        rec = [rel, "f", mode, st.st_size, digest]
    else:
        kind = "p" if stat.S_ISFIFO(st.st_mode) else "o"
        rec = [rel, kind, mode, getattr(st, "st_rdev", 0)]
    if with_mtime:
        rec.append(st.st_mtime_ns)
    return rec


def _glob(root: str, pattern: str, ignore: DockerIgnore) -> list[str]:
    """Context-relative paths matching a wildcard source, component by component."""
    parts = [p for p in pattern.split("/") if p]
    found = [""]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: list[str] = []
        for base in found:
            directory = os.path.join(root, base) if base else root
            if not has_wildcards(part):
                rel = f"{base}/{part}" if base else part
                if os.path.lexists(os.path.join(root, rel)):
                    nxt.append(rel)
                continue
            try:
                names = sorted(os.listdir(directory))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for name in names:
                rel = f"{base}/{name}" if base else name
                if go_match(part, name) and (last or os.path.isdir(os.path.join(root, rel))):
                    nxt.append(rel)
        found = nxt
    return [f for f in found if not ignore.excluded(f)]


def context_records(context_dir: str | os.PathLike[str], sources: Iterable[str], *,
                    ignore: DockerIgnore | None = None, with_mtime: bool = False,
                    memo: dict[tuple[Any, ...], str] | None = None,
                    exclude: DockerIgnore | None = None) -> list[list[Any]]:
    """What COPY would read for `sources` (expanded, context-relative): one record per entry.

    A source names a file or directory (a directory's contents are copied, recursively) or is
    a wildcard pattern (Go filepath.Match per path component; matching nothing is allowed, as
    BuildKit allows it). A source that is missing, or hidden by .dockerignore, is a SourceError.
    Leading `/` and `..` can't leave the context. The source itself is followed if it is a
    symlink; links inside are recorded as links. `exclude` (COPY --exclude) leaves out the
    wildcard matches it names and, inside a directory source, the paths relative to it.
    """
    root = os.path.abspath(os.fspath(context_dir))
    ignore = ignore if ignore is not None else DockerIgnore()
    records: list[list[Any]] = []
    for top, real, full, st in roots(root, sources, ignore, exclude):
        records.append(entry_record(top, full, st, with_mtime, memo))
        if not stat.S_ISDIR(st.st_mode):
            continue
        for child, entry in ignore.walk(root, real):
            suffix = child[len(real):].lstrip("/") if real else child
            if exclude and exclude.excluded(suffix):
                continue
            name = f"{top}/{suffix}" if top else suffix
            records.append(entry_record(name, entry.path, entry.stat(follow_symlinks=False),
                                         with_mtime, memo))
    return records


def roots(root: str, sources: Iterable[str], ignore: DockerIgnore,
           exclude: DockerIgnore | None = None
           ) -> Iterable[tuple[str, str, str, os.stat_result]]:
    """(context path, resolved path, absolute path, lstat) of each source or wildcard match
    (matches that `exclude`, COPY --exclude, names are left out)."""
    for src in sources:
        rel = go_clean("/" + src.replace(os.sep, "/")).lstrip("/")
        if has_wildcards(rel):
            roots = [(m, f"{src} -> {m}") for m in _glob(root, rel, ignore)
                     if not (exclude and exclude.excluded(m))]
        else:
            roots = [(rel, src)]
        for top, label in roots:
            if top and ignore.excluded(top) and not (
                    ignore.has_exceptions and ignore.must_descend(top)):
                raise SourceError(f"{label}: excluded by .dockerignore, so not in the build "
                                  "context")
            real = resolve_in_root(root, top)
            full = os.path.join(root, real) if real else root
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                raise SourceError(f"{label}: not found in the build context") from None
            yield top, real, full, st


def check_sources(context_dir: str | os.PathLike[str], sources: Iterable[str], *,
                  ignore: DockerIgnore | None = None) -> None:
    """Raise SourceError if a source is missing or .dockerignore'd (reads no file contents)."""
    root = os.path.abspath(os.fspath(context_dir))
    for _ in roots(root, sources, ignore if ignore is not None else DockerIgnore()):
        pass

