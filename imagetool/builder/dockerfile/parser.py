"""Dockerfile parser (the entry point): text -> typed instructions, stages and the whole file.

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
written. lexer.py splits lines, instructions.py builds each one, model.py holds the result.
"""

from __future__ import annotations

import os

from .errors import DEFAULT_ESCAPE, DEFAULT_FILENAME, DockerfileError, InstructionError
from .instructions import Node, build
from .lexer import LineLexer
from .model import Arg, Cmd, Dockerfile, Entrypoint, From, Healthcheck, Instruction, Stage


def _instructions(lexer: LineLexer) -> list[Instruction]:
    """Every instruction of the lexed text; warnings go to `lexer.warnings`."""
    out: list[Instruction] = []
    for ll in lexer.logical_lines():
        node_warnings: list[str] = []
        node = Node(cmd=ll.cmd.upper(), keyword=ll.cmd, flags=ll.flags, rest=ll.rest,
                    original=ll.text.strip(), line=ll.start + lexer.offset,
                    end_line=ll.end + lexer.offset, heredocs=ll.heredocs, escape=lexer.escape,
                    warnings=node_warnings)
        try:
            out.append(build(node))
        except InstructionError as e:
            raise lexer.fail(str(e), ll.start, ll.end) from None
        lexer.warnings.extend(f"{lexer.filename}:{node.line}: {w}" for w in node_warnings)
    return out


def parse_instructions(text: str, filename: str = DEFAULT_FILENAME, *,
                       escape: str = DEFAULT_ESCAPE, first_line: int = 1
                       ) -> list[Instruction]:
    """Parse a fragment (e.g. an image's ONBUILD triggers) into instructions; no stage rules,
    no parser directives."""
    return _instructions(LineLexer(text, filename, escape, first_line, directives=False))


def parse(text: str | bytes, filename: str = DEFAULT_FILENAME) -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileError (`file:line: message`) when it is bad."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DockerfileError("not valid UTF-8 text", filename, line) from None
    p = LineLexer(text, filename)
    instructions = _instructions(p)
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
