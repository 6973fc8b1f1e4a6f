"""Lexing a Dockerfile (BuildKit's parser/line handling): physical lines -> logical lines.

Parser directives at the top, comments, escape-character line continuations (comment and
empty lines inside one dropped), the instruction keyword and its leading `--flags`, and the
here-documents a RUN/COPY/ADD line starts (their bodies follow the line). Also the word-level
helpers the instruction builders share: whitespace words, JSON arrays, heredoc words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import DEFAULT_ESCAPE, DockerfileError, InstructionError
from .shell import ExpandError, Lexer

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
#: Instructions whose line may start here-documents.
HEREDOC_CMDS = ("RUN", "COPY", "ADD")



@dataclass(kw_only=True)
class Heredoc:
    """One here-document: `name` is the delimiter (for COPY/ADD also the file's name)."""

    name: str
    content: str          # the lines as written, each with its newline
    expand: bool = True   # False for a quoted delimiter: no variable expansion
    chomp: bool = False   # `<<-`: leading tabs are stripped from each line
    fd: int = 0           # `3<<EOF` feeds fd 3 (for RUN)

    def body(self) -> str:
        """The content with `<<-` tab stripping applied."""
        if not self.chomp:
            return self.content
        return "".join(ln.lstrip("\t") for ln in self.content.splitlines(keepends=True))


def split_keepends(text: str) -> list[str]:
    """Split on \\n only (str.splitlines also splits on \\v, \\f, \\x1c, U+2028, ...)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def trim_newline(raw: str) -> str:
    if raw.endswith("\n"):
        raw = raw[:-1]
        if raw.endswith("\r"):
            raw = raw[:-1]
    return raw


def extract_flags(text: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (quotes and `\\` inside them honoured) and the rest."""
    words: list[str] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not text.startswith("--", pos):
            return text[pos:], words
        word, quote, blank_ok = [], "", False
        while pos < n:
            ch = text[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(text[pos])
                elif ch != "\\":
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(text[pos])
            else:
                word.append(ch)
            pos += 1
        w = "".join(word)
        if w == "--":
            return text[pos:].lstrip() if pos < n else "", words
        if w or blank_ok:
            words.append(w)


def split_command(line: str) -> tuple[str, list[str], str]:
    parts = WHITESPACE.split(line.strip(), maxsplit=1)
    cmd = parts[0]
    if len(parts) < 2:
        return cmd, [], ""
    rest, flags = extract_flags(parts[1])
    return cmd, flags, rest.strip()


def parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words; quotes and escapes are kept (the expansion removes them)."""
    words: list[str] = []
    word: list[str] = []
    in_word, quote, blank_ok = False, "", False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            if ch == escape and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
            i += 1
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


class NotStrings(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_json_array(rest: str) -> list[str] | None:
    """A JSON array of strings, or None when `rest` isn't JSON (the shell form then).

    Like Go's json.Decoder, text after the array is ignored. A JSON array holding anything
    but strings is an error, not a shell command.
    """
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise NotStrings()
    return value


def looks_json(rest: str) -> bool:
    try:
        return parse_json_array(rest) is not None
    except NotStrings:
        return True


def parse_heredoc_word(word: str) -> Heredoc | None:
    """`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF` -> a Heredoc without content; else None."""
    m = _HEREDOC_WORD.match(word)
    if not m or not m.group(3):
        return None
    fd, chomp, rest = m.groups()
    try:
        words = Lexer("\\", skip_unset=True).words(rest, {})
        if len(words) != 1:
            return None
        raw = Lexer("\\", skip_unset=True, raw_quotes=True).words(rest, {})
    except ExpandError as e:
        raise InstructionError(f"bad heredoc delimiter {rest!r}: {e}") from None
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"') if raw else 0
    return Heredoc(name=name, content="", expand=quotes == raw_quotes, chomp=chomp == "-",
                   fd=int(fd) if fd else 0)


def heredocs_in(line: str) -> list[Heredoc]:
    try:
        words = Lexer("\\", raw_quotes=True, raw_escapes=True).words(line, {})
    except ExpandError:
        return []
    docs = []
    for w in words:
        doc = parse_heredoc_word(w)
        if doc is not None:
            docs.append(doc)
    return docs


# --------------------------------------------------------------------------------------------


@dataclass
class LogicalLine:
    """One instruction as written: continuations joined, its heredoc bodies read.

    `start`/`end` are 1-based line numbers within the lexed text (without `first_line`).
    """

    start: int
    end: int
    text: str                 # the joined line, continuation characters removed
    cmd: str                  # the keyword as written
    flags: list[str]
    rest: str
    heredocs: list[Heredoc] = field(default_factory=list)


class LineLexer:
    """Splits text into logical lines; tracks parser directives and the escape character.

    `warnings` collects `file:line: ...` notes (empty continuation lines); errors are
    DockerfileErrors naming the line.
    """

    def __init__(self, text: str, filename: str, escape: str = DEFAULT_ESCAPE,
                 first_line: int = 1, directives: bool = True) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = split_keepends(text)
        self.filename = filename
        self.escape = escape
        self.offset = first_line - 1
        self.directives: dict[str, str] = {}
        self.directives_open = directives
        self.warnings: list[str] = []
        self.cont = self._continuation_regex(escape)

    @staticmethod
    def _continuation_regex(escape: str) -> re.Pattern[str]:
        return re.compile(re.escape(escape) + r"[ \t]*$")

    def fail(self, message: str, line: int, end: int | None = None) -> DockerfileError:
        """An error at lexed line `line` (shifted by `first_line`)."""
        return DockerfileError(message, self.filename, line + self.offset,
                               None if end is None else end + self.offset)

    def _directive(self, text: str, lineno: int) -> None:
        if not self.directives_open:
            return
        m = _DIRECTIVE.match(text)
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.directives_open = False
            return
        name, value = m.group(1).lower(), m.group(2)
        if name in self.directives:
            raise self.fail(f"only one {name} parser directive can be used", lineno)
        self.directives[name] = value
        if name == "escape":
            if value not in ("\\", "`"):
                raise self.fail(f"invalid escape token {value!r}: must be ` or \\", lineno)
            self.escape = value
            self.cont = self._continuation_regex(value)

    def _trim_cont(self, text: str) -> tuple[str, bool]:
        m = self.cont.search(text)
        if m:
            return text[:m.start()], True
        return text, False

    def logical_lines(self) -> Iterator[LogicalLine]:
        """The instructions' lines, lazily (a directive seen early changes later lexing)."""
        lines = self.lines
        i = 0
        while i < len(lines):
            raw = trim_newline(lines[i])
            i += 1
            start = i
            text = raw.lstrip()
            self._directive(text, start)
            if text.startswith("#"):
                continue
            line, more = self._trim_cont(text)
            if not more and line == "":
                continue
            empty_cont = False
            while more and i < len(lines):
                nxt = trim_newline(lines[i])
                i += 1
                if nxt.lstrip().startswith("#"):
                    continue
                if not nxt.strip():
                    empty_cont = True
                    continue
                seg, more = self._trim_cont(nxt)
                line += seg
            end = i
            if empty_cont:
                self.warnings.append(
                    f"{self.filename}:{start + self.offset}: empty continuation line in "
                    f"{line.strip()[:60]!r}; Docker will make these an error")
            try:
                cmd, flags, rest = split_command(line)
                inner, inner_rest = cmd.upper(), rest
                if inner == "ONBUILD" and rest:
                    inner_cmd, _, inner_rest = split_command(rest)
                    inner = inner_cmd.upper()
                heredocs: list[Heredoc] = []
                if inner in HEREDOC_CMDS and "<<" in line and not looks_json(inner_rest):
                    heredocs = heredocs_in(line)
            except InstructionError as e:
                raise self.fail(str(e), start, end) from None
            i = self._read_bodies(heredocs, i, start)
            yield LogicalLine(start=start, end=i, text=line, cmd=cmd, flags=flags, rest=rest,
                              heredocs=heredocs)

    def _read_bodies(self, heredocs: list[Heredoc], i: int, start: int) -> int:
        """Fill each heredoc's content from the lines at `i`; the index after the last."""
        lines = self.lines
        for h in heredocs:
            content: list[str] = []
            done = False
            while i < len(lines):
                body = lines[i]
                i += 1
                candidate = trim_newline(body)
                if h.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == h.name:
                    done = True
                    break
                content.append(body if body.endswith("\n") else body + "\n")
            if not done:
                raise self.fail(f"unterminated heredoc: no line {h.name!r} ends the "
                                f"here-document started here", start, i)
            h.content = "".join(content)
        return i
