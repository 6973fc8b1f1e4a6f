"""Where imagetool's command line hands over to rootless mode: for an ordinary user, every
verb that touches the store or containers runs inside a user namespace (subids.plan's map,
entered by userns.enter) as the mapped root, so layers unpack with their owners and the
runtime (pyrunc) runs rootless in there. Root, and a process already inside, pass through.

This runs before the argument parser is even built (the process re-executes itself inside,
so whatever the first image imported is paid twice): the verb is found by a light scan."""

from __future__ import annotations

import os
import sys

# verbs that never touch image files or containers: no namespace needed; and exec, which
# joins a running container's namespaces: the container's user namespace is a child of the
# one its monitor entered, so only the host user (its owner) may join it, not a fresh one
OUTSIDE = frozenset({"login", "logout", "version", "help", "exec"})
GROUPS = frozenset({"container", "image", "system", "network", "volume", "builder"})
GLOBAL_WITH_VALUE = frozenset({"--root"})


def verb_of(argv: list[str]) -> str | None:
    """The verb of an imagetool command line (`container exec` gives exec), or None."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in GLOBAL_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-"):
            if a in ("-h", "--help", "--version"):
                return None
            i += 1
            continue
        if a in GROUPS and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            return argv[i + 1]
        return a
    return None


def maybe_enter(argv: list[str]) -> None:
    """Re-execute this command inside the user namespace when an ordinary user runs a store
    verb; a missing subordinate range is a warning (single-id fallback), other problems one
    line and exit 125."""
    verb = verb_of(argv)
    if verb is None or verb in OUTSIDE or os.geteuid() == 0:
        return
    from imagetool.rootless import userns
    if userns.inside():
        return
    from imagetool.rootless import subids
    try:
        m = subids.plan()
    except subids.SubidError as e:
        print(f"imagetool: {e}", file=sys.stderr)
        raise SystemExit(125) from None
    if m.warning and not os.environ.get("IMAGETOOL_ROOTLESS_QUIET"):
        print(f"imagetool: warning: {m.warning}", file=sys.stderr)
    userns.enter(m)
    # Start afresh in here: a process's memory belongs to the namespace it was exec'd in,
    # and the runtime's non-dumpable init is reachable (/proc/<pid>/ns/*) only from that
    # namespace's root, so the monitor must not be a fork of the pre-namespace image.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def exit_now(code: object) -> None:
    """End the command re-executed inside the user namespace with `code` without the
    interpreter's teardown (~10 ms for the modules a run loads): its output is flushed, and
    nothing else is pending when only the main thread is left. Returns when that is not so
    (or `code` is not an int: sys.exit's own rules apply then)."""
    if not isinstance(code, int) or not 0 <= code <= 255:
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a closed pipe: let the usual exit report it
    os._exit(code)
