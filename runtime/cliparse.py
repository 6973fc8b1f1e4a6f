"""A small command-line parser for runc's grammar, because argparse costs ~4.5 ms per call
(its help formatter imports shutil, bz2 and lzma) and shims call pyrunc several times per
container.

Grammar: global options, a command, then the command's options and positionals in any
order. Options are `--name value`, `--name=value`, `-n value`, boolean flags, and, like Go's
flag package, single-dash long names (`-bundle x`). `--` ends the options.
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class UsageError(Exception):
    """Bad command line: printed with a hint to --help, exit status 1 (runc's)."""


class UnknownCommand(UsageError):
    """A command name pyrunc does not have (runc: "No help topic for 'x'", exit status 3)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Opt:
    def __init__(self, *names: str, dest: str | None = None, value: str | None = None,
                 default: "Any" = None, type: "Any" = str, help: str = "",
                 choices: tuple[str, ...] | None = None, multi: bool = False) -> None:
        self.names = names
        self.dest = dest or names[0].lstrip("-").replace("-", "_")
        self.value = value  # metavar; None means a boolean flag
        self.default = default if value is not None or default is not None else False
        self.type = type
        self.help = help
        self.choices = choices
        self.multi = multi  # may repeat: values collect into a list

    def convert(self, raw: str, name: str) -> "Any":
        if self.choices and raw not in self.choices:
            raise UsageError(f"{name}: {raw!r} is not one of {', '.join(self.choices)}")
        try:
            return self.type(raw)
        except ValueError:
            raise UsageError(f"{name}: invalid value {raw!r}") from None


class Arg:
    def __init__(self, dest: str, help: str = "", optional: bool = False,
                 default: "Any" = None, rest: bool = False) -> None:
        self.dest = dest
        self.help = help
        self.optional = optional or rest
        self.default = default
        self.rest = rest  # takes every remaining positional


class Command:
    """A verb. Its options may be a function returning them, called on first use: a table
    of every verb then costs little when one verb runs (~0.2 ms a call for pyrunc's)."""

    def __init__(self, name: str, help: str,
                 opts: "list[Opt] | Callable[[], list[Opt]] | None" = None,
                 args: list[Arg] | None = None) -> None:
        self.name = name
        self.help = help
        self._opts = opts
        self.args = args or []

    @property
    def opts(self) -> list[Opt]:
        if callable(self._opts):
            self._opts = self._opts()
        return self._opts or []


class Namespace:
    def __init__(self, **kw: "Any") -> None:
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        return f"Namespace({self.__dict__})"


def _lookup(opts: list[Opt], token: str) -> tuple[Opt | None, str | None, str]:
    """(option, inline value, spelled name) for `token`, accepting `-long` for `--long`."""
    name, eq, inline = token.partition("=")
    for o in opts:
        if name in o.names or (name.startswith("-") and not name.startswith("--")
                               and "-" + name in o.names):
            return o, (inline if eq else None), name
    return None, None, name


def _parse_opts(tokens: list[str], i: int, opts: list[Opt], ns: "dict[str, Any]",
                positionals: list[str] | None, stop_at_positional: bool = False) -> int:
    """Consume options (and positionals when a list is given) from tokens[i:]; return the
    index where parsing stopped (the command name, for the global level). With
    stop_at_positional, everything from the first positional on is positional, as Go's
    flag package reads `exec ID sh -c ...`."""
    while i < len(tokens):
        tok = tokens[i]
        if positionals is not None and (tok == "--" or (stop_at_positional and positionals)):
            positionals.extend(tokens[i + 1:] if tok == "--" else tokens[i:])
            return len(tokens)
        if tok.startswith("-") and tok != "-":
            opt, inline, name = _lookup(opts, tok)
            if opt is None:
                if tok in ("-h", "--help", "-help"):
                    ns["help"] = True
                    i += 1
                    continue
                raise UsageError(f"flag provided but not defined: {name}")
            if opt.value is None:
                ns[opt.dest] = inline not in ("false", "0") if inline is not None else True
                i += 1
                continue
            if inline is None:
                if i + 1 >= len(tokens):
                    raise UsageError(f"flag needs an argument: {name}")
                inline = tokens[i + 1]
                i += 1
            value = opt.convert(inline, name)
            if opt.multi:
                ns.setdefault(opt.dest, []).append(value)
            else:
                ns[opt.dest] = value
            i += 1
            continue
        if positionals is None:
            return i
        positionals.append(tok)
        i += 1
    return i


def parse(argv: list[str], global_opts: list[Opt],
          commands: dict[str, Command]) -> Namespace:
    ns: dict[str, Any] = {o.dest: ([] if o.multi else o.default) for o in global_opts}
    ns["help"] = False
    ns["topic"] = None
    i = _parse_opts(argv, 0, global_opts, ns, None)
    if i >= len(argv):
        ns["command"] = None
        return Namespace(**ns)
    name = argv[i]
    if name in ("help", "h"):  # `help [command]`, as runc's
        ns.update(command=None, help=True, topic=argv[i + 1] if i + 1 < len(argv) else None)
        return Namespace(**ns)
    cmd = commands.get(name)
    if cmd is None:
        raise UnknownCommand(name)
    ns["command"] = name
    for o in cmd.opts:
        ns[o.dest] = [] if o.multi else o.default
    pos: list[str] = []
    _parse_opts(argv, i + 1, cmd.opts, ns, pos, any(a.rest for a in cmd.args))
    if ns["help"]:
        return Namespace(**ns)
    for a in cmd.args:
        if a.rest:
            ns[a.dest] = pos
            pos = []
        elif pos:
            ns[a.dest] = pos.pop(0)
        elif a.optional:
            ns[a.dest] = a.default
        else:
            raise UsageError(f"{name}: missing argument <{a.dest}>")
    if pos:
        raise UsageError(f"{name}: unexpected argument {pos[0]!r}")
    return Namespace(**ns)


def usage_error(prog: str, msg: str) -> int:
    sys.stderr.write(f"{prog}: {msg}\n(see '{prog} --help')\n")
    return 1
