"""The Dockerfile front end, split as BuildKit splits its frontend.

errors (DockerfileError), shell (the shell-word lexer: quotes, escapes, `$VAR`), lexer (lines,
continuations, directives, heredocs), model (one dataclass per instruction, stages, the file),
values (flag and value parsers), instructions (one builder per keyword), parser (the entry
point: `parse`, `parse_file`, `parse_instructions`). The public names are re-exported here, so
`imagetool.builder.dockerfile.X` keeps working.
"""

from __future__ import annotations

from .errors import DEFAULT_ESCAPE, DEFAULT_FILENAME, DockerfileError
from .lexer import Heredoc, parse_heredoc_word
from .model import (
    INSTRUCTIONS,
    Add,
    Arg,
    ArgDef,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    FileTransfer,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
    instruction_from_dict,
)
from .parser import parse, parse_file, parse_instructions
from .values import (
    check_chmod,
    check_digest,
    exposed_ports,
    is_git_url,
    is_url,
    parse_duration,
    parse_mount,
    parse_signal,
)

__all__ = [
    "DEFAULT_ESCAPE", "DEFAULT_FILENAME", "INSTRUCTIONS", "Add", "Arg", "ArgDef", "Cmd", "Copy",
    "Dockerfile", "DockerfileError", "Entrypoint", "Env", "Expose", "FileTransfer", "From",
    "Healthcheck", "Heredoc", "Instruction", "KeyValue", "Label", "Maintainer", "Mount",
    "Onbuild", "Run", "Shell", "Stage", "StopSignal", "User", "Volume", "Workdir",
    "check_chmod", "check_digest", "exposed_ports", "instruction_from_dict", "is_git_url",
    "is_url", "parse", "parse_duration", "parse_file", "parse_heredoc_word",
    "parse_instructions", "parse_mount", "parse_signal",
]
