""".dockerignore: which files of the build context COPY and ADD may see.

Docker's rules (moby/patternmatcher and the reference documentation):

- One pattern per line; a line whose first character is `#` is a comment; surrounding
  whitespace is trimmed; empty lines are skipped. Patterns are cleaned like Go's filepath.Clean
  and a leading `/` is dropped (paths are relative to the context root).
- `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class
  (`[^...]` negated), `\\` escapes; `**` matches any number of directories (also none).
- A pattern that matches a directory excludes everything below it.
- `!pattern` re-includes what it matches. The last pattern that matches a path decides.
- The Dockerfile and .dockerignore are excluded from COPY/ADD like any other file when a
  pattern matches them; the builder still reads the Dockerfile (Docker sends both to the
  daemon regardless and only hides them from the build's COPY/ADD).
- BuildKit reads `<Dockerfile>.dockerignore` next to the Dockerfile in preference to the
  context's `.dockerignore`.

`go_match` is Go's filepath.Match, for COPY source wildcards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from imagetool.errors import ImagetoolError

IGNORE_FILE = ".dockerignore"


class PatternError(ImagetoolError, ValueError):
    """A pattern Go's filepath.Match would call malformed (ErrBadPattern)."""


def go_clean(path: str) -> str:
    """Go's path.Clean: collapse `//`, `.` and `..`; `""` -> `"."`; keeps a leading `/`."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _class_end(pattern: str, i: int) -> int:
    """Index just past a `[...]` class starting at pattern[i] == '['; PatternError if bad."""
    n = len(pattern)
    i += 1
    if i < n and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < n and pattern[i] == "]" and ranges > 0:
            return i + 1
        lo, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-":
            _, i = _class_char(pattern, i + 1)
        del lo
        ranges += 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise PatternError(f"syntax error in pattern {pattern!r}")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise PatternError(f"syntax error in pattern {pattern!r}")
    return pattern[i], i + 1


def check_pattern(pattern: str) -> None:
    """Raise PatternError where Go's filepath.Match would return ErrBadPattern."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise PatternError(f"syntax error in pattern {pattern!r}")
            i += 2
        elif ch == "[":
            i = _class_end(pattern, i)
        else:
            i += 1


def _go_match_regex(pattern: str) -> re.Pattern[str]:
    check_pattern(pattern)
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "[":
            end = _class_end(pattern, i)
            body = pattern[i + 1:end - 1]
            neg = body.startswith("^")
            if neg:
                body = body[1:]
            parts, j = [], 0
            while j < len(body):
                c = body[j]
                if c == "\\":
                    j += 1
                    c = body[j]
                parts.append(re.escape(c) if c != "-" else "-")
                j += 1
            out.append("[" + ("^" if neg else "") + "".join(parts) + "]")
            i = end
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


_GO_CACHE: dict[str, re.Pattern[str]] = {}


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match on `/`-separated paths: the whole name must match."""
    rx = _GO_CACHE.get(pattern)
    if rx is None:
        rx = _GO_CACHE[pattern] = _go_match_regex(pattern)
    return rx.fullmatch(name) is not None


def has_wildcards(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


# --------------------------------------------------------------------------------------------


_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regexp"
_ESCAPE_CHARS = set(".+()|{}$")


class Pattern:
    """One cleaned .dockerignore pattern, compiled the way Docker's patternmatcher does."""

    __slots__ = ("text", "exclusion", "kind", "regex")

    def __init__(self, text: str, exclusion: bool = False) -> None:
        self.text = text
        self.exclusion = exclusion
        self.kind, self.regex = self._compile(text)

    def __repr__(self) -> str:
        return f"Pattern({'!' if self.exclusion else ''}{self.text})"

    @staticmethod
    def _compile(pattern: str) -> tuple[str, re.Pattern[str] | None]:
        rx = ["^"]
        kind = _EXACT
        i, n = 0, len(pattern)
        first = True
        while i < n:
            ch = pattern[i]
            i += 1
            if ch == "*":
                if i < n and pattern[i] == "*":
                    i += 1
                    if i < n and pattern[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            rx.append(".*")
                            kind = _REGEX
                    else:
                        rx.append("(.*/)?")
                        kind = _REGEX
                    if first:
                        kind = _SUFFIX
                else:
                    rx.append("[^/]*")
                    kind = _REGEX
            elif ch == "?":
                rx.append("[^/]")
                kind = _REGEX
            elif ch in _ESCAPE_CHARS:
                rx.append("\\" + ch)
            elif ch == "\\":
                if i < n:
                    rx.append("\\" + pattern[i])
                    i += 1
                    kind = _REGEX
                else:
                    rx.append("\\\\")
            elif ch in "[]":
                rx.append(ch)
                kind = _REGEX
            else:
                rx.append(ch)
            first = False
        if kind != _REGEX:
            return kind, None
        try:
            return kind, re.compile("".join(rx) + "$", re.DOTALL)
        except re.error as e:
            raise PatternError(f"syntax error in pattern {pattern!r}: {e}") from None

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


class DockerIgnore:
    """An ordered list of patterns; `excluded(path)` answers for one context-relative path."""

    def __init__(self, patterns: list[str] | None = None) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns or []:
            self.add(raw)

    def add(self, raw: str) -> None:
        p = raw.strip()
        if p == "":
            return
        exclusion = p.startswith("!")
        if exclusion:
            p = p[1:].strip()
            if p == "":
                raise PatternError('illegal exclusion pattern: "!"')
        p = go_clean(p)
        if len(p) > 1 and p.startswith("/"):
            p = p[1:]
        check_pattern(p)
        self.patterns.append(Pattern(p, exclusion))

    @classmethod
    def parse(cls, text: str, filename: str = IGNORE_FILE) -> DockerIgnore:
        """The contents of a .dockerignore file; a bad pattern is `file:line: ...`."""
        if text.startswith("\ufeff"):
            text = text[1:]
        out = cls()
        for n, line in enumerate(text.split("\n"), 1):
            if line.endswith("\r"):
                line = line[:-1]
            if line.startswith("#"):
                continue
            try:
                out.add(line)
            except PatternError as e:
                raise PatternError(f"{filename}:{n}: {e}") from None
        return out

    @classmethod
    def load(cls, context_dir: str | os.PathLike[str],
             dockerfile: str | os.PathLike[str] | None = None) -> DockerIgnore:
        """The ignore file that applies: `<Dockerfile>.dockerignore`, else the context's."""
        candidates = []
        if dockerfile is not None:
            candidates.append(os.fspath(dockerfile) + IGNORE_FILE)
        candidates.append(os.path.join(os.fspath(context_dir), IGNORE_FILE))
        for path in candidates:
            try:
                with open(path, encoding="utf-8") as f:
                    return cls.parse(f.read(), path)
            except FileNotFoundError:
                continue
        return cls()

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"DockerIgnore({self.as_list()!r})"

    def as_list(self) -> list[str]:
        return [("!" if p.exclusion else "") + p.text for p in self.patterns]

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """True if `path` (relative to the context, `/`-separated) is hidden from COPY/ADD.

        A pattern matching the path or any of its parent directories counts; patterns are
        tried in order and the last one that matches wins.
        """
        path = go_clean(path.lstrip("/")) if path not in ("", ".") else "."
        if path == ".":
            return False
        parts = path.split("/")
        parents = ["/".join(parts[:i + 1]) for i in range(len(parts) - 1)]
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            hit = pat.match(path) or any(pat.match(d) for d in parents)
            if hit:
                matched = not pat.exclusion
        return matched

    def must_descend(self, directory: str) -> bool:
        """For an excluded directory: could an exception pattern re-include something below?
        (Docker's walker only looks inside when an exception's text starts with `dir/`.)"""
        prefix = directory.rstrip("/") + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)

    def walk(self, context_dir: str | os.PathLike[str], start: str = ""
             ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Every entry under `start` (context-relative) that COPY/ADD may see, in sorted
        order, as (relative path, DirEntry). Symlinks are not followed."""
        root = os.fspath(context_dir)
        base = os.path.join(root, start) if start else root
        stack = [(start, base)]
        while stack:
            rel_dir, abs_dir = stack.pop()
            try:
                entries = sorted(os.scandir(abs_dir), key=lambda e: e.name)
            except NotADirectoryError:
                return
            subdirs = []
            for e in entries:
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                is_dir = e.is_dir(follow_symlinks=False)
                if self.excluded(rel):
                    if is_dir and self.has_exceptions and self.must_descend(rel):
                        subdirs.append((rel, e.path))
                    continue
                yield rel, e
                if is_dir:
                    subdirs.append((rel, e.path))
            stack.extend(reversed(subdirs))

