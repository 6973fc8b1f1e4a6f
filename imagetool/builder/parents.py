"""COPY --parents: which entries a source names, and where each lands below the destination.

As BuildKit does it: a source `pivot/./pattern` (no `/./`: the pivot is the root) copies
what `pattern` matches below the pivot, at its path relative to the pivot, so
`COPY --parents x/./y/*.txt /d/` gives /d/y/a.txt. The pattern is an include pattern
(.dockerignore syntax, so `**` spans directories): a matched directory brings its whole
contents, and the parent directories of every match come along as copies of the source's.
A wildcard matching nothing copies nothing; a plain path that is missing is an error.
Entries are never followed (a symlink is copied as one); the pivot and the pattern's literal
leading directories are resolved inside the root, as any COPY source is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from .buildcontext import SourceError, resolve_in_root
from .dockerignore import DockerIgnore, Pattern, go_clean, has_wildcards

Entry = tuple[str, str, os.stat_result]     # (path below the destination, host path, lstat)


def split(src: str) -> tuple[str, str]:
    """(pivot, pattern) of a source, both cleaned and relative ("" for the root)."""
    pivot, sep, pattern = src.partition("/./")
    if not sep:
        pivot, pattern = "", src

    def clean(p: str) -> str:
        return go_clean("/" + p.replace(os.sep, "/")).lstrip("/")
    return clean(pivot), clean(pattern)


def _matches(pat: Pattern, rel: str) -> bool:
    """Included: the path or one of its parent directories matches (fsutil's include)."""
    parts = rel.split("/")
    return any(pat.match("/".join(parts[:i])) for i in range(1, len(parts) + 1))


def entries(root: str, sources: Iterable[str], ignore: DockerIgnore,
            exclude: DockerIgnore | None = None) -> Iterator[Entry]:
    """Every entry the sources copy, parents before children, each parent directory once;
    `exclude` (COPY --exclude) names paths relative to the pivot to leave out."""
    seen: set[str] = set()
    for src in sources:
        pivot, pattern = split(src)
        parts = [p for p in pattern.split("/") if p]
        n = next((i for i, p in enumerate(parts) if has_wildcards(p)), len(parts))
        literal = "/".join(parts[:n])
        wild = n < len(parts)
        found = os.path.join(pivot, literal) if pivot and literal else pivot or literal
        real = resolve_in_root(root, found)
        full = os.path.join(root, real) if real else root
        if real and ignore.excluded(real) and not (
                ignore.has_exceptions and ignore.must_descend(real)):
            if wild:
                continue
            raise SourceError(f"{src}: excluded by .dockerignore, so not in the build context")
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            if wild:
                continue
            raise SourceError(f"{src}: not found in the build context") from None
        pat = Pattern(pattern) if wild else None
        if not wild and literal:
            yield from _parents(root, pivot, literal, seen)
            if literal not in seen and not (exclude and exclude.excluded(literal)):
                seen.add(literal)
                yield literal, full, st
        if not os.path.isdir(full) or os.path.islink(full):
            continue
        for child, entry in ignore.walk(root, real):
            rel = child[len(real):].lstrip("/") if real else child
            rel = f"{literal}/{rel}" if literal else rel
            if rel in seen or (exclude and exclude.excluded(rel)):
                continue
            if pat is not None and not _matches(pat, rel):
                continue
            yield from _parents(root, pivot, rel, seen)
            seen.add(rel)
            yield rel, entry.path, entry.stat(follow_symlinks=False)


def _parents(root: str, pivot: str, rel: str, seen: set[str]) -> Iterator[Entry]:
    """The directories above `rel` (below the pivot) not yet given, outermost first."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d in seen:
            continue
        seen.add(d)
        real = resolve_in_root(root, f"{pivot}/{d}" if pivot else d)
        full = os.path.join(root, real) if real else root
        yield d, full, os.stat(full)
