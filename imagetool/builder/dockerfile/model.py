"""The Dockerfile's typed model (BuildKit's instructions/commands.go): one dataclass per
instruction, each with its line numbers and original text, and the stages and whole file.

Every instruction, stage and the whole file are JSON-serialisable (`to_dict`, `from_dict`), for
the build cache and `--print-plan`. Values are kept as written; expand.py substitutes variables.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from .errors import DEFAULT_ESCAPE, DEFAULT_FILENAME, DockerfileError
from .lexer import Heredoc, parse_heredoc_word


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
class FileTransfer(Instruction):
    """The sources-and-destination part COPY and ADD share (BuildKit's SourcesAndDest)."""

    sources: list[str]               # paths/patterns (ADD: also http(s) and git URLs)
    dest: str
    heredocs: list[Heredoc] = field(default_factory=list)   # inline sources: file = name
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    exclude: list[str] = field(default_factory=list)
    json_form: bool = False

    #: `to_dict`'s key order (the order these instructions always serialised in).
    KEY_ORDER: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        head = ["instruction", "line", "end_line", "original", "flags"]
        return {k: out[k] for k in (*head, *self.KEY_ORDER)}


@dataclass(kw_only=True)
class Copy(FileTransfer):
    NAME: ClassVar[str] = "COPY"
    KEY_ORDER: ClassVar[tuple[str, ...]] = (
        "sources", "dest", "heredocs", "from_stage", "chown", "chmod", "link", "parents",
        "exclude", "json_form")
    from_stage: str | None = None    # `--from`: a stage name or index, or an image reference
    parents: bool = False


@dataclass(kw_only=True)
class Add(FileTransfer):
    NAME: ClassVar[str] = "ADD"
    KEY_ORDER: ClassVar[tuple[str, ...]] = (
        "sources", "dest", "heredocs", "chown", "chmod", "link", "checksum", "keep_git_dir",
        "exclude", "json_form")
    checksum: str | None = None
    keep_git_dir: bool = False


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
                   meta_args=[cast(Arg, instruction_from_dict(a)) for a in data["meta_args"]],
                   stages=[Stage.from_dict(s) for s in data["stages"]],
                   warnings=list(data["warnings"]))

