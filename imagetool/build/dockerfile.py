"""Dockerfile parser: text -> typed instructions, each with its line numbers and original text.

Docker's rules, as the reference documentation and BuildKit's frontend give them:

- Parser directives (`# syntax=`, `# escape=`, `# check=`) are comments of the form
  `# name=value` at the very top; the first line that is not one (an empty line, a comment, an
  instruction, an unknown directive) ends them. Each may appear once.
- A line ending in the escape character (`\\`, or `` ` `` after `# escape=`), optionally
  followed by spaces or tabs, continues on the next line. Comment lines and empty lines inside a
  continuation are dropped (empty ones with a warning, as Docker does). A `#` only starts a
  comment at the start of a line.
- The instruction keyword is case-insensitive. `--name=value` flags directly after it are the
  instruction's options; each instruction accepts its own set and refuses others.
- RUN, CMD, ENTRYPOINT, SHELL (and HEALTHCHECK CMD) take a JSON array (exec form) or a
  string (shell form). Text that starts with `[` but is not a valid JSON array is the shell form,
  as in Docker; a JSON array with a non-string element is an error. ADD, COPY and VOLUME take a
  JSON array or whitespace-separated words.
- RUN, COPY and ADD may use heredocs (`<<EOF`, `<<-EOF` strips leading tabs, a quoted
  delimiter `<<"EOF"` / `<<'EOF'` turns off expansion); the bodies follow the instruction line.
- ENV and LABEL take `key=value ...` (quotes and escapes kept for the expansion step) or the
  legacy `ENV key value with spaces`.

Variable substitution is not done here (see expand.py): instructions keep their arguments as
written. Every instruction, stage and the whole file are JSON-serialisable (`to_dict`,
`from_dict`), for the build cache and `--print-plan`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runtime import signals

DEFAULT_FILENAME = "Dockerfile"
DEFAULT_ESCAPE = "\\"

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_OCTAL_MODE = re.compile(r"^[0-7]{1,4}$")
_SYMBOLIC_MODE = re.compile(r"^[ugoa]*[-+=][rwxXst]*([-+=][rwxXst]*)*(,[ugoa]*[-+=][rwxXst]*)*$")
_DIGEST = {"sha256": 64, "sha384": 96, "sha512": 128}


class DockerfileError(ValueError):
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


class _Fail(ValueError):
    """An error found while building one instruction; gets file and line attached above."""


# --------------------------------------------------------------------------------------------
# Typed instructions


def _plain(value: Any) -> Any:
    if isinstance(value, Instruction):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(kw_only=True)
class KeyValue:
    key: str
    value: str


@dataclass(kw_only=True)
class ArgDef:
    name: str
    default: str | None = None


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


@dataclass(kw_only=True)
class Mount:
    """One `RUN --mount=...`; values as written (or as expanded, after expand.py)."""

    spec: str                        # the option text after `--mount=`
    type: str = "bind"               # bind | cache | tmpfs | secret | ssh
    target: str | None = None
    source: str | None = None
    from_stage: str | None = None    # `from=`: a stage name or index, or an image
    readonly: bool = False
    id: str | None = None
    sharing: str | None = None       # cache: shared | private | locked
    mode: str | None = None          # octal, as written
    uid: str | None = None
    gid: str | None = None
    size: str | None = None          # tmpfs: bytes, with optional k/m/g suffix
    required: bool = False           # secret/ssh
    env: str | None = None           # secret: expose as this environment variable

    def mode_int(self) -> int | None:
        return int(self.mode, 8) if self.mode is not None else None


@dataclass(kw_only=True)
class Instruction:
    """Common to every instruction: where it is and how it was written."""

    NAME: ClassVar[str] = ""
    line: int
    end_line: int
    original: str                    # the logical line, continuations joined (as Docker prints)
    flags: list[str] = field(default_factory=list)   # the `--flag=value` words as written

    @property
    def cmd(self) -> str:
        return self.NAME

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instruction": self.NAME}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def semantic(self) -> dict[str, Any]:
        """What the instruction means, without where or how it was spelled (for cache keys)."""
        out = self.to_dict()
        for key in ("line", "end_line", "original", "flags"):
            out.pop(key, None)
        if isinstance(self, Onbuild):
            out["trigger"] = self.trigger.semantic()
        return out

    def location(self, filename: str = DEFAULT_FILENAME) -> str:
        return f"{filename}:{self.line}"


@dataclass(kw_only=True)
class From(Instruction):
    NAME: ClassVar[str] = "FROM"
    image: str                       # as written: may hold `$ARG` (expanded by the plan)
    name: str | None = None          # `AS name`, lower-cased
    platform: str | None = None


@dataclass(kw_only=True)
class Arg(Instruction):
    NAME: ClassVar[str] = "ARG"
    args: list[ArgDef]


@dataclass(kw_only=True)
class Env(Instruction):
    NAME: ClassVar[str] = "ENV"
    pairs: list[KeyValue]            # as written; expand.py removes quotes and substitutes
    legacy: bool = False             # `ENV key value`


@dataclass(kw_only=True)
class Label(Instruction):
    NAME: ClassVar[str] = "LABEL"
    pairs: list[KeyValue]
    legacy: bool = False


@dataclass(kw_only=True)
class Run(Instruction):
    NAME: ClassVar[str] = "RUN"
    command: list[str]               # shell form: one string; exec form: the argv
    shell_form: bool = True
    heredocs: list[Heredoc] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    network: str | None = None       # default | none | host
    security: str | None = None      # sandbox | insecure

    def argv(self, shell: list[str]) -> tuple[list[str], dict[str, str]]:
        """The process to run, and inline files to put under /dev/pipes/ (mode 0755).

        A shell-form RUN is `shell + [command]`. With heredocs, BuildKit's rules: a command
        that is only `<<EOF` runs the body, as the script /dev/pipes/EOF (through the shell,
        `sh -c /dev/pipes/EOF`) if the document as written starts with `#!`, else as the
        shell's command string; anything else hands the command and the documents to the
        shell to interpret (so `python3 <<EOF` reads it on stdin). RUN bodies are never
        expanded by the builder: the shell does that, or not for a quoted delimiter.
        """
        if not self.shell_form:
            return list(self.command), {}
        cmd = self.command[0] if self.command else ""
        if not self.heredocs:
            return [*shell, cmd], {}
        try:
            doc = parse_heredoc_word(cmd.strip())
        except ValueError:
            doc = None
        if doc is not None:
            first = self.heredocs[0]
            body = first.body()
            if first.content.startswith("#!"):
                return [*shell, f"/dev/pipes/{first.name}"], {first.name: body}
            return [*shell, body], {}
        full = cmd
        for h in self.heredocs:
            full += "\n" + h.content + h.name
        return [*shell, full], {}


@dataclass(kw_only=True)
class Cmd(Instruction):
    NAME: ClassVar[str] = "CMD"
    command: list[str]
    shell_form: bool = True


@dataclass(kw_only=True)
class Entrypoint(Instruction):
    NAME: ClassVar[str] = "ENTRYPOINT"
    command: list[str]               # exec form `[]` clears the entrypoint
    shell_form: bool = True


@dataclass(kw_only=True)
class Shell(Instruction):
    NAME: ClassVar[str] = "SHELL"
    shell: list[str]


@dataclass(kw_only=True)
class Expose(Instruction):
    NAME: ClassVar[str] = "EXPOSE"
    ports: list[str]                 # as written; `exposed_ports()` normalises after expansion


@dataclass(kw_only=True)
class Copy(Instruction):
    NAME: ClassVar[str] = "COPY"
    sources: list[str]               # paths (or patterns) in the context or the --from stage
    dest: str
    heredocs: list[Heredoc] = field(default_factory=list)   # inline sources: file = name
    from_stage: str | None = None    # `--from`: a stage name or index, or an image reference
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: list[str] = field(default_factory=list)
    json_form: bool = False


@dataclass(kw_only=True)
class Add(Instruction):
    NAME: ClassVar[str] = "ADD"
    sources: list[str]               # context paths, http(s) URLs, git URLs
    dest: str
    heredocs: list[Heredoc] = field(default_factory=list)
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False
    exclude: list[str] = field(default_factory=list)
    json_form: bool = False


@dataclass(kw_only=True)
class Volume(Instruction):
    NAME: ClassVar[str] = "VOLUME"
    paths: list[str]


@dataclass(kw_only=True)
class User(Instruction):
    NAME: ClassVar[str] = "USER"
    user: str


@dataclass(kw_only=True)
class Workdir(Instruction):
    NAME: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(kw_only=True)
class Onbuild(Instruction):
    NAME: ClassVar[str] = "ONBUILD"
    expression: str                  # the trigger text stored in the image (with heredocs)
    trigger: Instruction             # the same, parsed (checked now, run by a later build)


@dataclass(kw_only=True)
class StopSignal(Instruction):
    NAME: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(kw_only=True)
class Healthcheck(Instruction):
    """`test` is what the image config stores: ["NONE"], ["CMD", ...] or ["CMD-SHELL", s]."""

    NAME: ClassVar[str] = "HEALTHCHECK"
    test: list[str]
    interval: int = 0                # nanoseconds; 0 = inherit / default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(kw_only=True)
class Maintainer(Instruction):
    NAME: ClassVar[str] = "MAINTAINER"
    name: str


INSTRUCTIONS: dict[str, type[Instruction]] = {
    cls.NAME: cls for cls in (From, Arg, Env, Label, Run, Cmd, Entrypoint, Shell, Expose, Copy,
                              Add, Volume, User, Workdir, Onbuild, StopSignal, Healthcheck,
                              Maintainer)
}
_NESTED: dict[str, Any] = {"pairs": KeyValue, "args": ArgDef, "heredocs": Heredoc,
                           "mounts": Mount}


def instruction_from_dict(data: dict[str, Any]) -> Instruction:
    """The inverse of `Instruction.to_dict`."""
    cls = INSTRUCTIONS.get(str(data.get("instruction", "")).upper())
    if cls is None:
        raise ValueError(f"not an instruction: {data.get('instruction')!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "trigger":
            value = instruction_from_dict(value)
        elif f.name in _NESTED and isinstance(value, list):
            value = [_NESTED[f.name](**v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, list):
            value = list(value)
        kwargs[f.name] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# The whole file


@dataclass(kw_only=True)
class Stage:
    index: int
    name: str | None                 # lower-cased; None for an unnamed stage
    header: From
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def line(self) -> int:
        return self.header.line

    def display_name(self) -> str:
        return self.name if self.name is not None else f"stage-{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "from": self.header.to_dict(),
                "instructions": [i.to_dict() for i in self.instructions]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage:
        header = instruction_from_dict(data["from"])
        assert isinstance(header, From)
        return cls(index=data["index"], name=data["name"], header=header,
                   instructions=[instruction_from_dict(i) for i in data["instructions"]])


@dataclass(kw_only=True)
class Dockerfile:
    filename: str
    escape: str = DEFAULT_ESCAPE
    directives: dict[str, str] = field(default_factory=dict)
    meta_args: list[Arg] = field(default_factory=list)     # ARGs before the first FROM
    stages: list[Stage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def syntax(self) -> str | None:
        return self.directives.get("syntax")

    def instructions(self) -> list[Instruction]:
        """Every instruction in file order (global ARGs, then each FROM and its stage)."""
        out: list[Instruction] = list(self.meta_args)
        for st in self.stages:
            out.append(st.header)
            out.extend(st.instructions)
        out.sort(key=lambda i: i.line)
        return out

    def stage(self, name_or_index: str | int) -> Stage | None:
        """A stage by name (case-insensitive) or index; None if there is none."""
        if isinstance(name_or_index, int) or str(name_or_index).isdigit():
            i = int(name_or_index)
            return self.stages[i] if 0 <= i < len(self.stages) else None
        key = str(name_or_index).lower()
        for st in self.stages:
            if st.name == key:
                return st
        return None

    def error(self, message: str, line: int | None = None) -> DockerfileError:
        return DockerfileError(message, self.filename, line)

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "escape": self.escape,
                "directives": dict(self.directives),
                "meta_args": [a.to_dict() for a in self.meta_args],
                "stages": [s.to_dict() for s in self.stages],
                "warnings": list(self.warnings)}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dockerfile:
        return cls(filename=data["filename"], escape=data["escape"],
                   directives=dict(data["directives"]),
                   meta_args=[instruction_from_dict(a) for a in data["meta_args"]],
                   stages=[Stage.from_dict(s) for s in data["stages"]],
                   warnings=list(data["warnings"]))


# --------------------------------------------------------------------------------------------
# Lexing helpers


def _split_keepends(text: str) -> list[str]:
    """Split on \\n only (str.splitlines also splits on \\v, \\f, \\x1c, U+2028, ...)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_newline(raw: str) -> str:
    if raw.endswith("\n"):
        raw = raw[:-1]
        if raw.endswith("\r"):
            raw = raw[:-1]
    return raw


def _extract_flags(text: str) -> tuple[str, list[str]]:
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


def _split_command(line: str) -> tuple[str, list[str], str]:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    cmd = parts[0]
    if len(parts) < 2:
        return cmd, [], ""
    rest, flags = _extract_flags(parts[1])
    return cmd, flags, rest.strip()


def _parse_words(rest: str, escape: str) -> list[str]:
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


class _NotStrings(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_json_array(rest: str) -> list[str] | None:
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
        raise _NotStrings()
    return value


def _looks_json(rest: str) -> bool:
    try:
        return _parse_json_array(rest) is not None
    except _NotStrings:
        return True


def parse_heredoc_word(word: str) -> Heredoc | None:
    """`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF` -> a Heredoc without content; else None."""
    from .expand import ExpandError, Lexer

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
        raise _Fail(f"bad heredoc delimiter {rest!r}: {e}") from None
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"') if raw else 0
    return Heredoc(name=name, content="", expand=quotes == raw_quotes, chomp=chomp == "-",
                   fd=int(fd) if fd else 0)


def _heredocs_in(line: str) -> list[Heredoc]:
    from .expand import ExpandError, Lexer

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
# Flags


_FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "string"},
    "RUN": {"mount": "strings", "network": "string", "security": "string"},
    "COPY": {"from": "string", "chown": "string", "chmod": "string", "link": "bool",
             "parents": "bool", "exclude": "strings"},
    "ADD": {"chown": "string", "chmod": "string", "link": "bool", "checksum": "string",
            "keep-git-dir": "bool", "exclude": "strings"},
    "HEALTHCHECK": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
}


def _parse_flags(cmd: str, words: list[str]) -> dict[str, Any]:
    allowed = _FLAGS.get(cmd, {})
    out: dict[str, Any] = {}
    for word in words:
        if not word.startswith("--"):
            raise _Fail(f"{cmd}: flag should start with --: {word}")
        name, eq, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            valid = ", ".join("--" + f for f in allowed) or "none"
            hint = difflib.get_close_matches(name, list(allowed), n=1)
            extra = f"; did you mean --{hint[0]}?" if hint else ""
            raise _Fail(f"{cmd} does not take the flag --{name} (valid flags: {valid}){extra}")
        if name in out and kind != "strings":
            raise _Fail(f"{cmd}: duplicate flag specified: --{name}")
        if kind == "bool":
            if eq and value == "":
                raise _Fail(f"{cmd}: missing a value on flag: --{name}")
            low = value.lower()
            if low in ("", "true"):
                out[name] = True
            elif low == "false":
                out[name] = False
            else:
                raise _Fail(f"{cmd}: expecting boolean value for flag --{name}, not: {value}")
        else:
            if not eq:
                raise _Fail(f"{cmd}: missing a value on flag: --{name}")
            if kind == "strings":
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Validation helpers shared with expand.py


def parse_signal(text: str) -> int:
    """A STOPSIGNAL's number (runtime/signals.py: `SIGTERM`, `TERM`, `RTMIN+3`, `9`; not 0);
    ValueError if it names no signal."""
    return signals.parse(text)


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`) -> nanoseconds."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


_PROTOS = ("tcp", "udp", "sctp")


def exposed_ports(specs: list[str]) -> list[str]:
    """EXPOSE words (after expansion) -> the image config's keys: `80/tcp`, ranges unrolled."""
    out: list[str] = []
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in _PROTOS:
            raise ValueError(f"invalid proto: {spec.partition('/')[2]}")
        if ":" in port:  # ip:hostPort:containerPort or hostPort:containerPort
            port = port.rsplit(":", 1)[1]
        lo, dash, hi = port.partition("-")
        try:
            start = int(lo, 10)
            end = int(hi, 10) if dash else start
        except ValueError:
            raise ValueError(f"invalid containerPort: {port}") from None
        if not (0 < start <= 65535 and 0 < end <= 65535):
            raise ValueError(f"invalid containerPort: {port}")
        if end < start:
            raise ValueError(f"invalid port range: {port}")
        for p in range(start, end + 1):
            key = f"{p}/{proto}"
            if key not in out:
                out.append(key)
    return out


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


_SCP_LIKE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*@[A-Za-z0-9.-]+:")


def is_git_url(src: str) -> bool:
    """A git repository as BuildKit's ADD tells one: git://, ssh://, scp-like user@host:path,
    or an http(s) URL whose path ends in .git."""
    if src.startswith(("git://", "ssh://")) or _SCP_LIKE.match(src):
        return True
    if is_url(src):
        path = src.split("#", 1)[0].split("?", 1)[0]
        return path.endswith(".git")
    return False


def check_chmod(value: str) -> None:
    if not (_OCTAL_MODE.match(value) or _SYMBOLIC_MODE.match(value)):
        raise ValueError(f"invalid chmod value {value!r}: want octal (0755) or symbolic (u+x)")


def check_digest(value: str) -> None:
    algo, _, hexpart = value.partition(":")
    want = _DIGEST.get(algo)
    if want is None or len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise ValueError(f"invalid checksum {value!r}: want sha256:<64 hex digits>")


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_MOUNT_KEYS = {
    "type", "target", "dst", "destination", "source", "src", "from", "readonly", "ro",
    "readwrite", "rw", "id", "sharing", "mode", "uid", "gid", "required", "size", "env",
}
_TARGET_KEYS = ("target", "dst", "destination")
_SIZE = re.compile(r"^(\d+)([kmgKMG]?)[bB]?$")


def _csv_fields(spec: str) -> list[str]:
    """encoding/csv's reading of one record: commas separate, double quotes group."""
    fields: list[str] = []
    cur: list[str] = []
    i, n = 0, len(spec)
    at_start = True
    while i <= n:
        if i == n:
            fields.append("".join(cur))
            break
        ch = spec[i]
        if at_start and ch == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quote in {spec!r}")
                if spec[i] == '"':
                    if i + 1 < n and spec[i + 1] == '"':
                        cur.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                cur.append(spec[i])
                i += 1
            at_start = False
            continue
        if ch == ",":
            fields.append("".join(cur))
            cur, at_start = [], True
        else:
            cur.append(ch)
            at_start = False
        i += 1
    return fields


def _as_bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    low = value.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_mount(spec: str, expand: Any = None) -> Mount:
    """One `--mount` value. `expand(word)` substitutes variables first (None: keep as written,
    and leave values with `$` unchecked)."""
    m = Mount(spec=spec)
    ro: bool | None = None
    pending: dict[str, str] = {}
    for item in _csv_fields(spec):
        if item == "":
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key not in _MOUNT_KEYS:
            raise ValueError(f"unexpected key {key!r} in {spec!r}")
        val: str | None = value if eq else None
        if val is not None and expand is not None:
            val = expand(val)
        if key in ("readonly", "ro"):
            ro = _as_bool(key, val)
            continue
        if key in ("readwrite", "rw"):
            ro = not _as_bool(key, val)
            continue
        if key == "required":
            m.required = _as_bool(key, val)
            continue
        if val is None:
            raise ValueError(f"invalid value for {key}: missing '=' in {spec!r}")
        pending[key] = val
    for key, val in pending.items():
        if key == "type":
            if val.lower() not in _MOUNT_TYPES:
                raise ValueError(f"unsupported mount type {val!r} (want one of "
                                 f"{', '.join(_MOUNT_TYPES)})")
            m.type = val.lower()
        elif key in _TARGET_KEYS:
            m.target = val
        elif key in ("source", "src"):
            m.source = val
        elif key == "from":
            m.from_stage = val
        else:
            setattr(m, key, val)
    checked = expand is not None
    if m.sharing is not None and (checked or "$" not in m.sharing):
        if m.sharing not in ("shared", "private", "locked"):
            raise ValueError(f"unsupported sharing value {m.sharing!r} "
                             "(want shared, private or locked)")
    if m.mode is not None and (checked or "$" not in m.mode):
        if not re.fullmatch(r"[0-7]{1,4}", m.mode):
            raise ValueError(f"invalid mode {m.mode!r}: want octal")
    for key in ("uid", "gid"):
        v = getattr(m, key)
        if v is not None and (checked or "$" not in v) and not v.isdigit():
            raise ValueError(f"invalid {key} {v!r}: want a number")
    if m.size is not None and (checked or "$" not in m.size) and not _SIZE.match(m.size):
        raise ValueError(f"invalid size {m.size!r}")
    only = {"sharing": ("cache",), "size": ("tmpfs",), "env": ("secret",),
            "from": ("bind", "cache"), "id": ("cache", "secret", "ssh")}
    for key, types in only.items():
        present = m.from_stage if key == "from" else getattr(m, key)
        if present is not None and m.type not in types:
            raise ValueError(f"mount type {m.type!r} does not take {key}=")
    if m.required and m.type not in ("secret", "ssh"):
        raise ValueError(f"mount type {m.type!r} does not take required")
    for key in ("mode", "uid", "gid"):
        if getattr(m, key) is not None and m.type not in ("cache", "secret", "ssh"):
            raise ValueError(f"mount type {m.type!r} does not take {key}=")
    if m.type in ("bind", "cache", "tmpfs") and not m.target:
        raise ValueError(f"mount type {m.type!r} needs a target= in {spec!r}")
    if m.type == "secret":
        # BuildKit: source= is the secret's id too; the id defaults to the target's name
        if m.source and m.id:
            raise ValueError(f"secret mount takes source= or id=, not both, in {spec!r}")
        m.id = m.id or m.source
        m.source = None
        if not m.id and not m.target:
            raise ValueError(f"secret mount needs an id= or a target= in {spec!r}")
        if not m.id and m.target:
            m.id = os.path.basename(m.target.rstrip("/"))
        if not m.target and not m.env:
            m.target = f"/run/secrets/{os.path.basename(m.id)}"
    if m.type == "ssh" and not m.id:
        m.id = "default"
    if ro is None:
        ro = m.type == "bind"
    m.readonly = ro
    return m


# --------------------------------------------------------------------------------------------
# Instruction builders: (node fields) -> typed instruction; raise _Fail on a bad one


@dataclass
class _Node:
    cmd: str          # upper-cased keyword
    keyword: str      # as written
    flags: list[str]
    rest: str
    original: str
    line: int
    end_line: int
    heredocs: list[Heredoc]
    escape: str
    warnings: list[str]


def _common(n: _Node) -> dict[str, Any]:
    return {"line": n.line, "end_line": n.end_line, "original": n.original, "flags": n.flags}


def _maybe_json(n: _Node) -> tuple[list[str], bool]:
    """(args, is_json) for RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK CMD."""
    if n.rest == "":
        return [], False
    try:
        arr = _parse_json_array(n.rest)
    except _NotStrings:
        raise _Fail(f"{n.cmd}: when using JSON array syntax, arrays must contain only "
                    "strings") from None
    if arr is not None:
        return arr, True
    if n.rest.lstrip().startswith("["):
        n.warnings.append(f"{n.cmd} arguments start with '[' but are not a "
                          "valid JSON array; treated as a shell command (as Docker does)")
    return [n.rest], False


def _maybe_json_list(n: _Node) -> tuple[list[str], bool]:
    """(args, is_json) for ADD, COPY, VOLUME: JSON array or whitespace-separated words."""
    try:
        arr = _parse_json_array(n.rest)
    except _NotStrings:
        raise _Fail(f"{n.cmd}: when using JSON array syntax, arrays must contain only "
                    "strings") from None
    if arr is not None:
        return arr, True
    return [w for w in _WHITESPACE.split(n.rest) if w], False


def _name_values(n: _Node) -> tuple[list[KeyValue], bool]:
    words = _parse_words(n.rest, n.escape)
    if not words:
        raise _Fail(f"{n.cmd} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(n.rest, maxsplit=1)
        if len(parts) < 2 or parts[1] == "":
            raise _Fail(f"{n.cmd} must have two arguments (`{n.cmd} key=value` or the legacy "
                        f"`{n.cmd} key value`)")
        n.warnings.append(f"legacy `{n.cmd} key value` form; "
                          f"`{n.cmd} key=value` is recommended")
        pairs, legacy = [KeyValue(key=parts[0], value=parts[1])], True
    else:
        pairs, legacy = [], False
        for w in words:
            if "=" not in w:
                raise _Fail(f"{n.cmd}: can't find = in {w!r}; must be of the form name=value")
            k, _, v = w.partition("=")
            pairs.append(KeyValue(key=k, value=v))
    for p in pairs:
        if p.key == "":
            raise _Fail(f"{n.cmd} names can not be blank")
    return pairs, legacy


def _one_arg(n: _Node) -> str:
    if n.rest == "":
        raise _Fail(f"{n.cmd} requires exactly one argument")
    return n.rest


def _build_from(n: _Node, fl: dict[str, Any]) -> Instruction:
    args = [w for w in _WHITESPACE.split(n.rest) if w]
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Fail(f"invalid name for build stage: {args[2]!r}, name can't start with a "
                        "number or contain symbols")
    elif len(args) != 1:
        raise _Fail("FROM requires either one or three arguments (FROM image [AS name])")
    return From(**_common(n), image=args[0], name=name, platform=fl.get("platform"))


def _build_arg(n: _Node, fl: dict[str, Any]) -> Instruction:
    words = _parse_words(n.rest, n.escape)
    if not words:
        raise _Fail("ARG requires at least one argument")
    defs = []
    for w in words:
        name, eq, value = w.partition("=")
        if name == "":
            raise _Fail("ARG names can not be blank")
        defs.append(ArgDef(name=name, default=value if eq else None))
    return Arg(**_common(n), args=defs)


def _build_env(n: _Node, fl: dict[str, Any]) -> Instruction:
    pairs, legacy = _name_values(n)
    return Env(**_common(n), pairs=pairs, legacy=legacy)


def _build_label(n: _Node, fl: dict[str, Any]) -> Instruction:
    pairs, legacy = _name_values(n)
    return Label(**_common(n), pairs=pairs, legacy=legacy)


def _build_run(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    if not args or (not is_json and not args[0].strip()):
        raise _Fail("RUN requires at least one argument")
    mounts = []
    for spec in fl.get("mount", []):
        try:
            mounts.append(parse_mount(spec))
        except ValueError as e:
            raise _Fail(f"RUN --mount: {e}") from None
    network = fl.get("network")
    if network is not None and "$" not in network and network not in ("default", "none",
                                                                        "host"):
        raise _Fail(f"RUN --network={network}: unsupported (want default, none or host)")
    security = fl.get("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise _Fail(f"RUN --security={security}: unsupported (want sandbox or insecure)")
    return Run(**_common(n), command=args, shell_form=not is_json, heredocs=n.heredocs,
               mounts=mounts, network=network, security=security)


def _build_cmd(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    return Cmd(**_common(n), command=args, shell_form=not is_json)


def _build_entrypoint(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    return Entrypoint(**_common(n), command=args, shell_form=not is_json)


def _build_shell(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    if not args:
        raise _Fail("SHELL requires at least one argument")
    if not is_json:
        raise _Fail('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", '
                    '"-c"]')
    return Shell(**_common(n), shell=args)


def _build_expose(n: _Node, fl: dict[str, Any]) -> Instruction:
    ports = [w for w in _WHITESPACE.split(n.rest) if w]
    if not ports:
        raise _Fail("EXPOSE requires at least one argument")
    static = [p for p in ports if "$" not in p]
    try:
        exposed_ports(static)
    except ValueError as e:
        raise _Fail(f"EXPOSE: {e}") from None
    return Expose(**_common(n), ports=ports)


def _sources_and_dest(n: _Node, args: list[str], is_json: bool
                      ) -> tuple[list[str], str, list[Heredoc]]:
    if len(args) < 2:
        raise _Fail(f"{n.cmd} requires at least two arguments, but only one was provided. "
                    "Destination could not be determined")
    srcs, dest = args[:-1], args[-1]
    if not is_json and parse_heredoc_word(dest) is not None:
        raise _Fail(f"{n.cmd} cannot accept a heredoc as a destination")
    by_name = {h.name: h for h in n.heredocs}
    paths, docs = [], []
    for s in srcs:
        h = None if is_json else parse_heredoc_word(s)
        if h is None:
            paths.append(s)
        else:
            h = by_name.get(h.name, h)
            docs.append(h)
    count = len(paths) + len(docs)
    if count > 1 and "$" not in dest and not dest.endswith("/") and not (
            n.escape == "`" and dest.endswith("\\")):
        raise _Fail(f"When using {n.cmd} with more than one source file, the destination must "
                    f"be a directory and end with a / (got {dest!r})")
    return paths, dest, docs


def _check_chmod(n: _Node, value: str | None) -> None:
    if value is not None and "$" not in value:
        try:
            check_chmod(value)
        except ValueError as e:
            raise _Fail(f"{n.cmd} --chmod: {e}") from None


def _build_copy(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json_list(n)
    paths, dest, docs = _sources_and_dest(n, args, is_json)
    _check_chmod(n, fl.get("chmod"))
    return Copy(**_common(n), sources=paths, dest=dest, heredocs=docs,
                from_stage=fl.get("from"), chown=fl.get("chown"), chmod=fl.get("chmod"),
                link=fl.get("link", False), parents=fl.get("parents", False),
                exclude=fl.get("exclude", []), json_form=is_json)


def _build_add(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json_list(n)
    paths, dest, docs = _sources_and_dest(n, args, is_json)
    _check_chmod(n, fl.get("chmod"))
    checksum = fl.get("checksum")
    if checksum is not None:
        if len(paths) != 1 or docs:
            raise _Fail("ADD --checksum can't be specified for multiple sources")
        src = paths[0]
        if "$" not in src and not is_url(src) and not is_git_url(src):
            raise _Fail(f"ADD --checksum needs an http(s) or git source, not {src!r}")
        if "$" not in checksum and not is_git_url(src):
            try:
                check_digest(checksum)
            except ValueError as e:
                raise _Fail(f"ADD --checksum: {e}") from None
    return Add(**_common(n), sources=paths, dest=dest, heredocs=docs, chown=fl.get("chown"),
               chmod=fl.get("chmod"), link=fl.get("link", False), checksum=checksum,
               keep_git_dir=fl.get("keep-git-dir", False), exclude=fl.get("exclude", []),
               json_form=is_json)


def _build_volume(n: _Node, fl: dict[str, Any]) -> Instruction:
    args, _ = _maybe_json_list(n)
    if not args:
        raise _Fail("VOLUME requires at least one argument")
    paths = []
    for a in args:
        a = a.strip()
        if a == "":
            raise _Fail("VOLUME specified can not be an empty string")
        paths.append(a)
    return Volume(**_common(n), paths=paths)


def _build_user(n: _Node, fl: dict[str, Any]) -> Instruction:
    return User(**_common(n), user=_one_arg(n))


def _build_workdir(n: _Node, fl: dict[str, Any]) -> Instruction:
    return Workdir(**_common(n), path=_one_arg(n))


def _build_stopsignal(n: _Node, fl: dict[str, Any]) -> Instruction:
    sig = _one_arg(n)
    if "$" not in sig:
        try:
            parse_signal(sig)
        except ValueError as e:
            raise _Fail(f"STOPSIGNAL: {e}") from None
    return StopSignal(**_common(n), signal=sig)


def _build_maintainer(n: _Node, fl: dict[str, Any]) -> Instruction:
    n.warnings.append("MAINTAINER is deprecated; use "
                      "LABEL org.opencontainers.image.authors=...")
    return Maintainer(**_common(n), name=_one_arg(n))


def _build_healthcheck(n: _Node, fl: dict[str, Any]) -> Instruction:
    rest = n.rest
    if rest == "":
        raise _Fail("HEALTHCHECK requires at least one argument")
    parts = rest.split(None, 1)
    kind = parts[0].upper()
    sub = _Node(**{**n.__dict__, "rest": parts[1] if len(parts) > 1 else ""})
    if kind == "NONE":
        if sub.rest:
            raise _Fail("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(**_common(n), test=["NONE"])
    if kind != "CMD":
        raise _Fail(f"HEALTHCHECK: unknown type {parts[0]!r} (want CMD or NONE)")
    args, is_json = _maybe_json(sub)
    if not args or (not is_json and not args[0].strip()):
        raise _Fail("HEALTHCHECK: missing command after HEALTHCHECK CMD")
    test = ["CMD", *args] if is_json else ["CMD-SHELL", args[0]]
    durations = {}
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        value = fl.get(flag, "")
        if value == "":
            durations[flag] = 0
            continue
        try:
            d = parse_duration(value)
        except ValueError as e:
            raise _Fail(f"HEALTHCHECK --{flag}: {e}") from None
        if d != 0 and d < 1_000_000:
            raise _Fail(f"HEALTHCHECK --{flag}={value} cannot be less than 1ms")
        durations[flag] = d
    retries = 0
    if fl.get("retries", "") != "":
        try:
            retries = int(fl["retries"], 10)
        except ValueError:
            raise _Fail(f"HEALTHCHECK --retries={fl['retries']}: not a number") from None
        if retries < 0:
            raise _Fail(f"HEALTHCHECK --retries cannot be negative ({retries})")
    return Healthcheck(**_common(n), test=test, interval=durations["interval"],
                       timeout=durations["timeout"], start_period=durations["start-period"],
                       start_interval=durations["start-interval"], retries=retries)


_BUILDERS = {
    "FROM": _build_from, "ARG": _build_arg, "ENV": _build_env, "LABEL": _build_label,
    "RUN": _build_run, "CMD": _build_cmd, "ENTRYPOINT": _build_entrypoint,
    "SHELL": _build_shell, "EXPOSE": _build_expose, "COPY": _build_copy, "ADD": _build_add,
    "VOLUME": _build_volume, "USER": _build_user, "WORKDIR": _build_workdir,
    "STOPSIGNAL": _build_stopsignal, "HEALTHCHECK": _build_healthcheck,
    "MAINTAINER": _build_maintainer,
}
_HEREDOC_CMDS = ("RUN", "COPY", "ADD")


# --------------------------------------------------------------------------------------------
# The line-level parser


class _Parser:
    def __init__(self, text: str, filename: str, escape: str = DEFAULT_ESCAPE,
                 first_line: int = 1, directives: bool = True) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = _split_keepends(text)
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

    def instructions(self) -> list[Instruction]:
        out: list[Instruction] = []
        lines = self.lines
        i = 0
        while i < len(lines):
            raw = _trim_newline(lines[i])
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
                nxt = _trim_newline(lines[i])
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
            node_warnings: list[str] = []
            try:
                cmd, flags, rest = _split_command(line)
                upper = cmd.upper()
                inner, inner_rest = upper, rest
                if upper == "ONBUILD" and rest:
                    inner_cmd, _, inner_rest = _split_command(rest)
                    inner = inner_cmd.upper()
                heredocs: list[Heredoc] = []
                if inner in _HEREDOC_CMDS and "<<" in line and not _looks_json(inner_rest):
                    heredocs = _heredocs_in(line)
            except _Fail as e:
                raise self.fail(str(e), start, end) from None
            for h in heredocs:
                content: list[str] = []
                done = False
                while i < len(lines):
                    body = lines[i]
                    i += 1
                    candidate = _trim_newline(body)
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
            end = i
            node = _Node(cmd=upper, keyword=cmd, flags=flags, rest=rest, original=line.strip(),
                         line=start + self.offset, end_line=end + self.offset,
                         heredocs=heredocs, escape=self.escape, warnings=node_warnings)
            try:
                out.append(self._build(node))
            except _Fail as e:
                raise self.fail(str(e), start, end) from None
            self.warnings.extend(f"{self.filename}:{node.line}: {w}" for w in node_warnings)
        return out

    def _build(self, n: _Node) -> Instruction:
        if n.cmd == "ONBUILD":
            return self._build_onbuild(n)
        builder = _BUILDERS.get(n.cmd)
        if builder is None:
            names = list(_BUILDERS) + ["ONBUILD"]
            hint = difflib.get_close_matches(n.cmd, names, n=1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            raise _Fail(f"unknown instruction: {n.keyword}{extra}")
        flags = _parse_flags(n.cmd, n.flags)
        return builder(n, flags)

    def _build_onbuild(self, n: _Node) -> Instruction:
        if n.flags:
            _parse_flags("ONBUILD", n.flags)
        if n.rest == "":
            raise _Fail("ONBUILD requires at least one argument")
        cmd, flags, rest = _split_command(n.rest)
        trigger = cmd.upper()
        if trigger == "ONBUILD":
            raise _Fail("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("FROM", "MAINTAINER"):
            raise _Fail(f"{trigger} isn't allowed as an ONBUILD trigger")
        expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", n.original)
        for h in n.heredocs:
            expression += "\n" + h.content + h.name
        inner = _Node(cmd=trigger, keyword=cmd, flags=flags, rest=rest, original=n.rest.strip(),
                      line=n.line, end_line=n.end_line, heredocs=n.heredocs, escape=n.escape,
                      warnings=n.warnings)
        built = self._build(inner)
        return Onbuild(**_common(n), expression=expression, trigger=built)


def parse_instructions(text: str, filename: str = DEFAULT_FILENAME, *,
                       escape: str = DEFAULT_ESCAPE, first_line: int = 1
                       ) -> list[Instruction]:
    """Parse a fragment (e.g. an image's ONBUILD triggers) into instructions; no stage rules,
    no parser directives."""
    p = _Parser(text, filename, escape, first_line, directives=False)
    return p.instructions()


def parse(text: str | bytes, filename: str = DEFAULT_FILENAME) -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileError (`file:line: message`) when it is bad."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text.count(b"\n", 0, e.start) + 1
            raise DockerfileError("not valid UTF-8 text", filename, line) from None
    p = _Parser(text, filename)
    instructions = p.instructions()
    df = Dockerfile(filename=filename, escape=p.escape, directives=p.directives,
                    warnings=p.warnings)
    if not instructions:
        raise DockerfileError("file with no instructions", filename,
                              max(len(p.lines), 1))
    current: Stage | None = None
    seen_names: dict[str, int] = {}
    for ins in instructions:
        if isinstance(ins, From):
            current = Stage(index=len(df.stages), name=ins.name, header=ins)
            if ins.name is not None:
                if ins.name in seen_names:
                    raise DockerfileError(
                        f"duplicate stage name {ins.name!r} (first defined on line "
                        f"{seen_names[ins.name]})", filename, ins.line)
                seen_names[ins.name] = ins.line
            df.stages.append(current)
        elif current is None:
            if isinstance(ins, Arg):
                df.meta_args.append(ins)
                continue
            raise DockerfileError(
                f"{ins.NAME} before the first FROM: only ARG may come before FROM (no build "
                "stage in current context)", filename, ins.line)
        else:
            current.instructions.append(ins)
    if not df.stages:
        raise DockerfileError("no FROM instruction: a Dockerfile needs at least one build "
                              "stage", filename, instructions[-1].line)
    for st in df.stages:
        for kind in (Cmd, Entrypoint, Healthcheck):
            found = [i for i in st.instructions if isinstance(i, kind)]
            if len(found) > 1:
                df.warnings.append(
                    f"{filename}:{found[0].line}: stage {st.display_name()} has "
                    f"{len(found)} {kind.NAME} instructions; only the last one "
                    f"(line {found[-1].line}) takes effect")
    return df


def parse_file(path: str | os.PathLike[str], filename: str | None = None) -> Dockerfile:
    with open(path, "rb") as f:
        data = f.read()
    return parse(data, filename or os.fspath(path))
