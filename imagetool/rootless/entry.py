"""Where imagetool's command line hands over to rootless mode: for an ordinary user, every
verb that touches the store or containers runs inside a user namespace (subids.plan's map,
entered by userns.enter) as the mapped root, so layers unpack with their owners and the
runtime (pyrunc) runs rootless in there. Root, and a process already inside, pass through."""

from __future__ import annotations

import os
import sys

# verbs that never touch image files or containers: no namespace needed; and exec, which
# joins a running container's namespaces: the container's user namespace is a child of the
# one its monitor entered, so only the host user (its owner) may join it, not a fresh one
OUTSIDE = frozenset({"login", "logout", "version", "help", "exec"})


def maybe_enter(verb: str | None) -> None:
    """Enter the user namespace when this is an ordinary user running a store verb; a
    missing subordinate range is a warning (single-id fallback), other problems one line and
    exit 125."""
    if verb is None or verb in OUTSIDE or os.geteuid() == 0:
        return
    from imagetool.rootless import subids, userns
    if userns.inside():
        return
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
