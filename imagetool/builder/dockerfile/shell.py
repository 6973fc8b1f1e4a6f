"""Docker's shell-word lexer (BuildKit's shell/lex.go): quotes, escapes and `$VAR` substitution.

The builder (not a shell) expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
`${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`,
`${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}` and `${VAR//pat/repl}`. Quotes are removed the
way sh removes them: single quotes keep everything literal, double quotes keep all but `$`, and
the escape character (`\\` or the one a `# escape=` directive set) escapes the next character.

`Lexer.word` is Docker's ProcessWord (one word, whitespace kept); `Lexer.words` is
ProcessWords (the result split on unquoted whitespace, as EXPOSE uses it). This module needs
nothing from the instruction model; the Dockerfile lexer (heredoc words) and expand.py use it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from imagetool.errors import ImagetoolError

_EOF = ""
# Parameters sh treats specially after `$`: `$@`, `$*`, ... expand to their (empty) value.
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpandError(ImagetoolError, ValueError):
    """A substitution sh would refuse (bad `${...}`, unterminated quote, `${X?}` unset)."""


class _Words:
    """Collects the words of ProcessWords: expanded text splits, quoted text doesn't."""

    __slots__ = ("word", "words", "in_word")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


@dataclasses.dataclass
class Expansion:
    """What one run of the lexer produced, and which variables it looked at."""

    word: str
    words: list[str]
    used: set[str]        # every name looked up
    unmatched: set[str]   # names looked up that were not set


class Lexer:
    """Docker's shell-word lexer; one instance is reusable (the state lives per call).

    raw_quotes keeps the quote characters in the result, raw_escapes keeps the escape
    characters, skip_quotes treats quotes as ordinary characters (COPY heredoc bodies),
    skip_unset leaves `$X` of an unset X as it was.
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_quotes: bool = False,
                 skip_unset: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape token {escape!r}: must be \\ or `")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_quotes = skip_quotes
        self.skip_unset = skip_unset

    def word(self, text: str, env: Mapping[str, str]) -> str:
        return self.process(text, env).word

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        return self.process(text, env).words

    def process(self, text: str, env: Mapping[str, str]) -> Expansion:
        run = _Run(self, text, env)
        try:
            word, words = run.stop_on(_EOF, self.raw_escapes)
        except ExpandError as e:
            raise ExpandError(f"failed to process {text!r}: {e}") from None
        return Expansion(word, words, run.used, run.unmatched)


class _Run:
    """One pass over one string (the scanner state of the Go lexer)."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.s = text
        self.i = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.used: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else _EOF

    def next(self) -> str:
        if self.i >= len(self.s):
            return _EOF
        ch = self.s[self.i]
        self.i += 1
        return ch

    def lookup(self, name: str) -> tuple[str, bool]:
        self.used.add(name)
        if name in self.env:
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        esc = self.lx.escape
        quotes = not self.lx.skip_quotes
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif quotes and ch == "'":
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw(tmp)
            elif quotes and ch == '"':
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw(tmp)
            else:
                ch = self.next()
                if ch == esc:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ExpandError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        out = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ExpandError(
                    "unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        esc = self.lx.escape
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ExpandError(
                    "unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue  # a lone escape at the very end is dropped
                if nxt in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters, digits, _; or a run of digits; or one special char."""
        start = self.i
        ch = self.peek()
        if ch and ch.isdigit():
            while self.peek() and self.peek().isdigit():
                self.next()
            return self.s[start:self.i]
        if ch and ch in _SPECIAL_PARAMS:
            self.next()
            return ch
        while True:
            ch = self.peek()
            if not ch or not (ch.isalnum() or ch == "_"):
                break
            self.next()
        return self.s[start:self.i]

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.next()  # the {
        ch = self.peek()
        if ch == _EOF:
            raise ExpandError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpandError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == _EOF:
            raise ExpandError("syntax error: missing '}'")
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch in ("+", "-", "?", "#", "%") and ch:
            pattern_mode = ch in "#%"
            if null_is_unset and pattern_mode:
                raise ExpandError(f"unsupported modifier ({modifier}) in substitution")
            try:
                word, _ = self.stop_on("}", pattern_mode)
            except ExpandError:
                if self.peek() == _EOF:
                    raise ExpandError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + modifier + word + "}"
            empty = not found or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if not found:
                    raise ExpandError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ExpandError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim(value, word, suffix=(ch == "%"), longest=greedy)
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.stop_on("/", True)
            except ExpandError:
                if self.peek() == _EOF:
                    raise ExpandError("syntax error: missing '/' in ${}") from None
                raise
            try:
                repl, _ = self.stop_on("}", True)
            except ExpandError:
                if self.peek() == _EOF:
                    raise ExpandError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "/" + pattern + "/" + repl + "}"
            rx = _pattern_regex(pattern, greedy=True)
            return rx.sub(lambda _m: repl, value, count=0 if replace_all else 1)
        raise ExpandError(f"unsupported modifier ({modifier}) in substitution")


def _pattern_regex(pattern: str, greedy: bool) -> re.Pattern[str]:
    """A sh pattern (`*`, `?`, `[...]`, `\\x`) as a Python regex."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            j = i
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(ch))
                continue
            body = pattern[i:j]
            i = j + 1
            if body[:1] in ("!", "^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append("[" + body + "]")
        else:
            out.append(re.escape(ch))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise ExpandError(f"invalid pattern ({pattern}) in substitution: {e}") from None


def _trim(value: str, pattern: str, *, suffix: bool, longest: bool) -> str:
    rx = _pattern_regex(pattern, greedy=True)
    n = len(value)
    if suffix:
        cuts = range(0, n + 1) if longest else range(n, -1, -1)
        for cut in cuts:
            if rx.fullmatch(value, cut):
                return value[:cut]
        return value
    cuts = range(n, -1, -1) if longest else range(0, n + 1)
    for cut in cuts:
        if rx.fullmatch(value[:cut]):
            return value[cut:]
    return value

