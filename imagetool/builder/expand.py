"""The builder's variable substitution: which instructions expand which arguments, and how.

The builder (not a shell) expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
`${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`,
`${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}` and `${VAR//pat/repl}` in the arguments of
ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR (and ARG defaults and the option
values of `RUN --mount`). Quotes are removed the way sh removes them: single quotes keep
everything literal, double quotes keep all but `$`, and the escape character (`\\` or the one a
`# escape=` directive set) escapes the next character. RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK and ONBUILD are left alone: the shell (or the later build) expands those.

The word lexer itself (`Lexer`, Docker's ProcessWord/ProcessWords) lives beside the Dockerfile
lexer in dockerfile/shell.py and is re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from . import dockerfile as df
from .dockerfile.shell import ExpandError, Expansion, Lexer

__all__ = ["EXPANDING", "VERBATIM", "ExpandError", "Expansion", "Lexer", "expand_instruction"]


# --------------------------------------------------------------------------------------------
# Which instructions expand which arguments

#: Instructions whose arguments the builder expands (ONBUILD's trigger is expanded when it runs,
#: in the later build; RUN only has its --mount options expanded).
EXPANDING = frozenset({"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL",
                       "USER", "VOLUME", "WORKDIR", "RUN"})
#: Instructions the builder passes on untouched (the shell or the runtime expands them).
VERBATIM = frozenset({"CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER"})


def expand_instruction(ins: df.Instruction, env: Mapping[str, str], *, escape: str = "\\",
                       filename: str = "Dockerfile", used: set[str] | None = None
                       ) -> df.Instruction:
    """A copy of `ins` with Docker's substitution applied to the arguments Docker expands.

    `env` is what the builder sees at that point: the image's ENV plus the ARGs in scope (for
    FROM, only the global ARGs). Names looked up are added to `used`. Errors (a bad `${...}`,
    an unterminated quote, a value that is invalid once expanded) are DockerfileErrors that
    name the instruction's line.
    """
    lexer = Lexer(escape)
    seen: set[str] = set() if used is None else used

    def word(text: str) -> str:
        res = lexer.process(text, env)
        seen.update(res.used)
        return res.word

    def opt(text: str | None) -> str | None:
        return None if text is None else word(text)

    def heredocs(docs: list[df.Heredoc]) -> list[df.Heredoc]:
        raw = Lexer("\\", skip_quotes=True)
        out = []
        for h in docs:
            if h.expand:
                res = raw.process(h.body(), env)
                seen.update(res.used)
                h = dataclasses.replace(h, content=res.word, chomp=False, expand=False)
            out.append(h)
        return out

    try:
        new = _expand(ins, env, word, opt, heredocs, lexer, seen)
    except (ExpandError, ValueError) as e:
        if isinstance(e, df.DockerfileError):
            raise
        raise df.DockerfileError(f"{ins.NAME}: {e}", filename, ins.line) from None
    return new


def _expand(ins: df.Instruction, env: Mapping[str, str], word: Callable[[str], str],
            opt: Callable[[str | None], str | None],
            heredocs: Callable[[list[df.Heredoc]], list[df.Heredoc]], lexer: Lexer,
            seen: set[str]) -> df.Instruction:
    rep = dataclasses.replace
    if isinstance(ins, df.From):
        image = word(ins.image)
        if image == "":
            raise ValueError(f"base name ({ins.image}) should not be blank")
        return rep(ins, image=image, platform=opt(ins.platform))
    if isinstance(ins, df.Arg):
        local = dict(env)
        defs = []
        for a in ins.args:
            if a.default is None:
                defs.append(a)
                continue
            res = lexer.process(a.default, local)
            seen.update(res.used)
            local[a.name] = res.word
            defs.append(rep(a, default=res.word))
        return rep(ins, args=defs)
    if isinstance(ins, (df.Env, df.Label)):
        pairs = [df.KeyValue(key=word(p.key), value=word(p.value)) for p in ins.pairs]
        for kv in pairs:
            if kv.key == "":
                raise ValueError(f"{ins.NAME} names can not be blank")
        return rep(ins, pairs=pairs)
    if isinstance(ins, df.Expose):
        ports: list[str] = []
        for p in ins.ports:
            res = lexer.process(p, env)
            seen.update(res.used)
            ports.extend(res.words)
        df.exposed_ports(ports)
        return rep(ins, ports=ports)
    if isinstance(ins, df.FileTransfer):
        sources = [word(s) for s in ins.sources]
        dest = word(ins.dest)
        chmod = opt(ins.chmod)
        if chmod is not None:
            df.check_chmod(chmod)
        if len(sources) + len(ins.heredocs) > 1 and not dest.endswith("/"):
            raise ValueError(f"When using {ins.NAME} with more than one source file, the "
                             f"destination must be a directory and end with a / (got {dest!r})")
        changes = dict(sources=sources, dest=dest, chown=opt(ins.chown), chmod=chmod,
                       heredocs=heredocs(ins.heredocs),
                       exclude=[word(x) for x in ins.exclude])
        if isinstance(ins, df.Add) and ins.checksum is not None:
            checksum = word(ins.checksum)
            if not (sources and df.is_git_url(sources[0])):
                df.check_digest(checksum)
            changes["checksum"] = checksum
        return rep(ins, **changes)
    if isinstance(ins, df.Volume):
        paths = [word(p).strip() for p in ins.paths]
        if any(p == "" for p in paths):
            raise ValueError("VOLUME specified can not be an empty string")
        return rep(ins, paths=paths)
    if isinstance(ins, df.User):
        return rep(ins, user=word(ins.user))
    if isinstance(ins, df.Workdir):
        return rep(ins, path=word(ins.path))
    if isinstance(ins, df.StopSignal):
        sig = word(ins.signal)
        df.parse_signal(sig)
        return rep(ins, signal=sig)
    if isinstance(ins, df.Run) and ins.mounts:
        return rep(ins, mounts=[df.parse_mount(m.spec, word) for m in ins.mounts])
    return ins
