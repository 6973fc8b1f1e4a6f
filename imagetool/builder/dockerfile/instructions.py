"""One builder per keyword (BuildKit's instructions/parse.go): a lexed line -> a typed
instruction. Builders raise _Fail; the parser attaches the file and line.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from .errors import InstructionError as _Fail
from .lexer import (
    WHITESPACE,
    Heredoc,
    NotStrings,
    parse_heredoc_word,
    parse_json_array,
    parse_words,
    split_command,
)
from .model import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from .values import (
    check_chmod,
    check_digest,
    exposed_ports,
    is_git_url,
    is_url,
    parse_duration,
    parse_flags,
    parse_mount,
    parse_signal,
)

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


@dataclass
class Node:
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


def _common(n: Node) -> dict[str, Any]:
    return {"line": n.line, "end_line": n.end_line, "original": n.original, "flags": n.flags}


def _maybe_json(n: Node) -> tuple[list[str], bool]:
    """(args, is_json) for RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK CMD."""
    if n.rest == "":
        return [], False
    try:
        arr = parse_json_array(n.rest)
    except NotStrings:
        raise _Fail(f"{n.cmd}: when using JSON array syntax, arrays must contain only "
                    "strings") from None
    if arr is not None:
        return arr, True
    if n.rest.lstrip().startswith("["):
        n.warnings.append(f"{n.cmd} arguments start with '[' but are not a "
                          "valid JSON array; treated as a shell command (as Docker does)")
    return [n.rest], False


def _maybe_json_list(n: Node) -> tuple[list[str], bool]:
    """(args, is_json) for ADD, COPY, VOLUME: JSON array or whitespace-separated words."""
    try:
        arr = parse_json_array(n.rest)
    except NotStrings:
        raise _Fail(f"{n.cmd}: when using JSON array syntax, arrays must contain only "
                    "strings") from None
    if arr is not None:
        return arr, True
    return [w for w in WHITESPACE.split(n.rest) if w], False


def _name_values(n: Node) -> tuple[list[KeyValue], bool]:
    words = parse_words(n.rest, n.escape)
    if not words:
        raise _Fail(f"{n.cmd} requires at least one argument")
    if "=" not in words[0]:
        parts = WHITESPACE.split(n.rest, maxsplit=1)
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


def _one_arg(n: Node) -> str:
    if n.rest == "":
        raise _Fail(f"{n.cmd} requires exactly one argument")
    return n.rest


def _build_from(n: Node, fl: dict[str, Any]) -> Instruction:
    args = [w for w in WHITESPACE.split(n.rest) if w]
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Fail(f"invalid name for build stage: {args[2]!r}, name can't start with a "
                        "number or contain symbols")
    elif len(args) != 1:
        raise _Fail("FROM requires either one or three arguments (FROM image [AS name])")
    return From(**_common(n), image=args[0], name=name, platform=fl.get("platform"))


def _build_arg(n: Node, fl: dict[str, Any]) -> Instruction:
    words = parse_words(n.rest, n.escape)
    if not words:
        raise _Fail("ARG requires at least one argument")
    defs = []
    for w in words:
        name, eq, value = w.partition("=")
        if name == "":
            raise _Fail("ARG names can not be blank")
        defs.append(ArgDef(name=name, default=value if eq else None))
    return Arg(**_common(n), args=defs)


def _build_env(n: Node, fl: dict[str, Any]) -> Instruction:
    pairs, legacy = _name_values(n)
    return Env(**_common(n), pairs=pairs, legacy=legacy)


def _build_label(n: Node, fl: dict[str, Any]) -> Instruction:
    pairs, legacy = _name_values(n)
    return Label(**_common(n), pairs=pairs, legacy=legacy)


def _build_run(n: Node, fl: dict[str, Any]) -> Instruction:
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


def _build_cmd(n: Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    return Cmd(**_common(n), command=args, shell_form=not is_json)


def _build_entrypoint(n: Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    return Entrypoint(**_common(n), command=args, shell_form=not is_json)


def _build_shell(n: Node, fl: dict[str, Any]) -> Instruction:
    args, is_json = _maybe_json(n)
    if not args:
        raise _Fail("SHELL requires at least one argument")
    if not is_json:
        raise _Fail('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", '
                    '"-c"]')
    return Shell(**_common(n), shell=args)


def _build_expose(n: Node, fl: dict[str, Any]) -> Instruction:
    ports = [w for w in WHITESPACE.split(n.rest) if w]
    if not ports:
        raise _Fail("EXPOSE requires at least one argument")
    static = [p for p in ports if "$" not in p]
    try:
        exposed_ports(static)
    except ValueError as e:
        raise _Fail(f"EXPOSE: {e}") from None
    return Expose(**_common(n), ports=ports)


def _sources_and_dest(n: Node, args: list[str], is_json: bool
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


def _check_chmod(n: Node, value: str | None) -> None:
    if value is not None and "$" not in value:
        try:
            check_chmod(value)
        except ValueError as e:
            raise _Fail(f"{n.cmd} --chmod: {e}") from None


def _transfer(n: Node, fl: dict[str, Any]) -> dict[str, Any]:
    """The FileTransfer fields COPY and ADD share (common ones included), checked."""
    args, is_json = _maybe_json_list(n)
    paths, dest, docs = _sources_and_dest(n, args, is_json)
    _check_chmod(n, fl.get("chmod"))
    return {**_common(n), "sources": paths, "dest": dest, "heredocs": docs,
            "chown": fl.get("chown"), "chmod": fl.get("chmod"), "link": fl.get("link", False),
            "exclude": fl.get("exclude", []), "json_form": is_json}


def _build_copy(n: Node, fl: dict[str, Any]) -> Instruction:
    return Copy(**_transfer(n, fl), from_stage=fl.get("from"),
                parents=fl.get("parents", False))


def _build_add(n: Node, fl: dict[str, Any]) -> Instruction:
    part = _transfer(n, fl)
    paths, docs = part["sources"], part["heredocs"]
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
    return Add(**part, checksum=checksum, keep_git_dir=fl.get("keep-git-dir", False))


def _build_volume(n: Node, fl: dict[str, Any]) -> Instruction:
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


def _build_user(n: Node, fl: dict[str, Any]) -> Instruction:
    return User(**_common(n), user=_one_arg(n))


def _build_workdir(n: Node, fl: dict[str, Any]) -> Instruction:
    return Workdir(**_common(n), path=_one_arg(n))


def _build_stopsignal(n: Node, fl: dict[str, Any]) -> Instruction:
    sig = _one_arg(n)
    if "$" not in sig:
        try:
            parse_signal(sig)
        except ValueError as e:
            raise _Fail(f"STOPSIGNAL: {e}") from None
    return StopSignal(**_common(n), signal=sig)


def _build_maintainer(n: Node, fl: dict[str, Any]) -> Instruction:
    n.warnings.append("MAINTAINER is deprecated; use "
                      "LABEL org.opencontainers.image.authors=...")
    return Maintainer(**_common(n), name=_one_arg(n))


def _build_healthcheck(n: Node, fl: dict[str, Any]) -> Instruction:
    rest = n.rest
    if rest == "":
        raise _Fail("HEALTHCHECK requires at least one argument")
    parts = rest.split(None, 1)
    kind = parts[0].upper()
    sub = Node(**{**n.__dict__, "rest": parts[1] if len(parts) > 1 else ""})
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


BUILDERS = {
    "FROM": _build_from, "ARG": _build_arg, "ENV": _build_env, "LABEL": _build_label,
    "RUN": _build_run, "CMD": _build_cmd, "ENTRYPOINT": _build_entrypoint,
    "SHELL": _build_shell, "EXPOSE": _build_expose, "COPY": _build_copy, "ADD": _build_add,
    "VOLUME": _build_volume, "USER": _build_user, "WORKDIR": _build_workdir,
    "STOPSIGNAL": _build_stopsignal, "HEALTHCHECK": _build_healthcheck,
    "MAINTAINER": _build_maintainer,
}


def build(n: Node) -> Instruction:
    """The typed instruction for one lexed line; _Fail when it is bad."""
    if n.cmd == "ONBUILD":
        return _build_onbuild(n)
    builder = BUILDERS.get(n.cmd)
    if builder is None:
        names = list(BUILDERS) + ["ONBUILD"]
        hint = difflib.get_close_matches(n.cmd, names, n=1)
        extra = f" (did you mean {hint[0]}?)" if hint else ""
        raise _Fail(f"unknown instruction: {n.keyword}{extra}")
    flags = parse_flags(n.cmd, n.flags)
    return builder(n, flags)


def _build_onbuild(n: Node) -> Instruction:
    if n.flags:
        parse_flags("ONBUILD", n.flags)
    if n.rest == "":
        raise _Fail("ONBUILD requires at least one argument")
    cmd, flags, rest = split_command(n.rest)
    trigger = cmd.upper()
    if trigger == "ONBUILD":
        raise _Fail("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("FROM", "MAINTAINER"):
        raise _Fail(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", n.original)
    for h in n.heredocs:
        expression += "\n" + h.content + h.name
    inner = Node(cmd=trigger, keyword=cmd, flags=flags, rest=rest, original=n.rest.strip(),
                 line=n.line, end_line=n.end_line, heredocs=n.heredocs, escape=n.escape,
                 warnings=n.warnings)
    built = build(inner)
    return Onbuild(**_common(n), expression=expression, trigger=built)
