"""Command-line parsing as docker users expect it: a mistyped verb names the nearest one
(`imgaes` -> images), an unknown flag prints that verb's usage (not the top-level one), and
the verbs that run containers exit 125 on bad usage (docker's "the tool failed")."""

from __future__ import annotations

import argparse
import sys

# bad usage of these is the tool failing before any container ran: 125, as docker and podman
RUN_VERBS = ("run", "exec", "create", "start")
_GLOBAL_WITH_VALUE = ("--root",)
# docker's command groups, as aliases of the flat verbs: `container ls` is `ps`
_CONTAINER = {v: v for v in ("attach", "create", "exec", "inspect", "kill", "logs", "pause",
                             "port", "rename", "restart", "rm", "run", "start", "stats",
                             "stop", "top", "unpause", "wait", "cp", "diff", "export",
                             "commit")}
GROUPS: dict[str, dict[str, str]] = {
    "container": {**_CONTAINER, "ls": "ps", "list": "ps", "ps": "ps",
                  "prune": "container-prune"},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "inspect": "inspect",
              "pull": "pull", "push": "push", "tag": "tag", "save": "save", "load": "load",
              "import": "import", "build": "build", "prune": "prune", "history": "history"},
    "system": {"df": "system-df", "prune": "system-prune", "info": "info",
               "events": "events"},
    "volume": {"create": "volume-create", "ls": "volume-ls", "list": "volume-ls",
               "rm": "volume-rm", "remove": "volume-rm", "inspect": "volume-inspect",
               "prune": "volume-prune"},
    "network": {"create": "network-create", "ls": "network-ls", "list": "network-ls",
                "rm": "network-rm", "remove": "network-rm", "inspect": "network-inspect",
                "connect": "network-connect", "disconnect": "network-disconnect"},
}


def _verb_index(argv: list[str]) -> int:
    """Index of the verb in argv (after the global options), or -1."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return i
    return -1


def flat_verb(argv: list[str]) -> str | None:
    """The one verb this command line runs (`container ls` gives ps), or None when it asks
    for the top-level help or names no verb: the parser need only hold that verb."""
    vi = _verb_index(argv)
    if vi < 0 or any(a in ("-h", "--help") for a in argv[:vi]):
        return None
    if argv[vi] in GROUPS:
        return GROUPS[argv[vi]].get(argv[vi + 1]) if vi + 1 < len(argv) else None
    return argv[vi]


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # argparse keeps no public handle on its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_args(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args with docker's conventions; exits (2, or 125 for RUN_VERBS) on bad usage."""
    subs = _subparsers(p)
    vi = _verb_index(argv)
    if vi >= 0 and vi + 1 < len(argv) and argv[vi] in GROUPS:
        target = GROUPS[argv[vi]].get(argv[vi + 1])
        if target is None or target not in subs:
            print(f"imagetool: '{argv[vi]} {argv[vi + 1]}' is not an imagetool verb; "
                  f"{argv[vi]} has: {', '.join(sorted(GROUPS[argv[vi]]))}", file=sys.stderr)
            sys.exit(2)
        shown = f"{argv[vi]} {argv[vi + 1]}"
        argv = [*argv[:vi], target, *argv[vi + 2:]]
    else:
        shown = None
    verb = argv[vi] if vi >= 0 else None
    if verb is not None and verb not in subs:
        import difflib  # only for this message (~1 ms)
        near = difflib.get_close_matches(verb, list(subs), n=1, cutoff=0.6)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        print(f"imagetool: '{verb}' is not an imagetool verb{hint}\n"
              "See 'imagetool --help'.", file=sys.stderr)
        sys.exit(2)
    code = 125 if verb in RUN_VERBS else 2
    try:
        args, extra = p.parse_known_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            sys.exit(code)
        raise
    if extra:
        sub = subs.get(verb or "")
        bad = next((x for x in extra if x.startswith("-")), extra[0])
        what = "unknown flag" if bad.startswith("-") else "unexpected argument"
        if sub is not None:
            sub.print_usage(sys.stderr)
        print(f"imagetool: {verb or ''}{': ' if verb else ''}{what}: {bad}\n"
              f"See 'imagetool {verb + ' ' if verb else ''}--help'.", file=sys.stderr)
        sys.exit(code)
    if shown is not None:
        args.verb = shown  # messages name the verb as it was typed: `network create: ...`
    return args
