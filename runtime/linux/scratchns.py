"""A container root for an init that stays in the runtime's own mount namespace.

When the config has no mount namespace (or names the runtime's own by path) the container
inherits the runtime's mount namespace, as the spec says. Building the root there would change
the host: the usual preparation sets the propagation of "/", binds the rootfs and mounts
/proc, /dev, ... where every process of the host sees them, and pivot_root would move the
host's root. So the root is built as always, but in a scratch mount namespace of the init's
own; the finished tree is then cloned as a detached mount (open_tree), the init goes back to
the runtime's namespace and makes that detached tree its root (fchdir + chroot). The host's
mount table never changes and nothing is left to unmount: the tree goes away with the last
process using it. As with runc in that case, the root is a chroot, not a pivot_root.
"""

from __future__ import annotations

import os

from runtime.errors import PyruncError
from runtime.linux import syscalls as sc


def enter() -> int:
    """Move into a scratch mount namespace; returns an fd on the runtime's namespace."""
    back = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWNS)
    except OSError as e:
        os.close(back)
        raise PyruncError(f"cannot make a scratch mount namespace for the root: "
                          f"{e.strerror}") from None
    return back


def leave(back: int) -> None:
    """From inside the finished root (pivoted in the scratch namespace): back to the
    runtime's mount namespace, with a detached copy of that root as our root."""
    try:
        tree = sc.open_tree_clone("/")
    except OSError as e:
        os.close(back)
        raise PyruncError("no mount namespace: this kernel cannot clone the root as a "
                          f"detached mount ({e.strerror})") from None
    try:
        try:
            sc.setns(back, sc.CLONE_NEWNS)
        except OSError as e:
            raise PyruncError("no mount namespace: cannot go back to the runtime's mount "
                              f"namespace: {e.strerror} (a new user namespace needs a "
                              "mount namespace of its own)") from None
        os.fchdir(tree)
        os.chroot(".")
        os.chdir("/")
    finally:
        os.close(tree)
        os.close(back)
