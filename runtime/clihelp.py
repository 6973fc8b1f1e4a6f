"""pyrunc's help and version texts, laid out as runc's (urfave/cli's) are, because people and
scripts read them: help starts `NAME:` / `   pyrunc - Open Container Initiative runtime...`
and has `USAGE:`, `COMMANDS:`, `GLOBAL OPTIONS:` (or `OPTIONS:` for a command); the version
is `pyrunc version X` / `commit: C` / `spec: S` lines, the lines docker's and containerd's
runtime-version parsers read. Imported only for -h/--help/help and -v/--version.
"""

from __future__ import annotations

import os
import sys

from runtime import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.cliparse import Arg, Command, Opt

ABOUT = "Open Container Initiative runtime, in Python, with runc's command line"
HELP_CMD = ("help, h", "show the commands, or one command's help")
_ARG_NAMES = {"id": "container-id", "argv": "command"}


def no_topic(name: str) -> str:
    """What runc says (and exits 3 for) when asked about a command it does not have."""
    return f"No help topic for '{name}'"


def version_text(prog: str) -> str:
    """`-v`/`--version`: runc's line shape, our own name and numbers (python where runc says
    go; libseccomp when it loads, as runc prints the one it is linked with)."""
    text = (f"{prog} version {__version__}\ncommit: {git_commit()}\nspec: {OCI_VERSION}\n"
            f"python: {sys.version.split()[0]}\n")
    try:
        from runtime.linux import seccomp
        return text + f"libseccomp: {seccomp.version()}\n"
    except Exception:  # noqa: BLE001 - no libseccomp: no line, as a runc built without it
        return text


def git_commit() -> str:
    """The commit of the checkout this runtime runs from, read from .git without running
    git; "unknown" outside a checkout (an installed copy, the bench's snapshot)."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gitdir = os.path.join(top, ".git")
    try:
        if os.path.isfile(gitdir):  # a worktree: ".git" names the real git dir
            gitdir = os.path.join(top, _read(gitdir).removeprefix("gitdir:").strip())
        head = _read(os.path.join(gitdir, "HEAD"))
        if not head.startswith("ref:"):
            return head or "unknown"
        ref = head[4:].strip()
        common = gitdir
        if os.path.exists(os.path.join(gitdir, "commondir")):
            common = os.path.join(gitdir, _read(os.path.join(gitdir, "commondir")))
        try:
            return _read(os.path.join(common, ref))
        except FileNotFoundError:
            for line in _read(os.path.join(common, "packed-refs")).splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    except OSError:
        pass
    return "unknown"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _opt_cell(o: Opt) -> str:
    value = " value" if o.value else ""
    return ", ".join(n + value for n in o.names)


def _opt_help(o: Opt) -> str:
    if not o.value or o.default in (None, "", []) or o.multi:
        return o.help
    default = f'"{o.default}"' if isinstance(o.default, str) else str(o.default)
    return f"{o.help} (default: {default})".lstrip()


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(a) for a, _ in rows) + 2
    return [f"   {a.ljust(width)}{b}".rstrip() for a, b in rows]


def _args_usage(args: list[Arg]) -> str:
    out = []
    for a in args:
        name = _ARG_NAMES.get(a.dest, a.dest.replace("_", "-"))
        out.append(f"<{name}> [arguments...]" if a.rest and a.dest == "argv" else
                   f"[{name}...]" if a.rest else f"[{name}]" if a.optional else f"<{name}>")
    return " ".join(out)


def app_help(prog: str, global_opts: list[Opt], commands: dict[str, Command]) -> str:
    lines = ["NAME:", f"   {prog} - {ABOUT}", "",
             "USAGE:", f"   {prog} [global options] command [command options] [arguments...]",
             "", "COMMANDS:"]
    lines += _table([(c.name, c.help) for c in commands.values()] + [HELP_CMD])
    lines += ["", "GLOBAL OPTIONS:"]
    lines += _table([(_opt_cell(o), _opt_help(o)) for o in global_opts if o.dest != "version"]
                    + [("--help, -h", "show help"), ("--version, -v", "print the version")])
    return "\n".join(lines) + "\n"


def command_help(prog: str, c: Command) -> str:
    usage = " ".join(x for x in (f"{prog} {c.name}", "[command options]" if c.opts else "",
                                 _args_usage(c.args)) if x)
    lines = ["NAME:", f"   {prog} {c.name} - {c.help}", "", "USAGE:", f"   {usage}"]
    if c.opts:
        lines += ["", "OPTIONS:"] + _table([(_opt_cell(o), _opt_help(o)) for o in c.opts])
    return "\n".join(lines) + "\n"
