"""Where a user's images and container state live.

Root keeps /var/lib/imagetool (state under <root>/runtime). Anyone else gets podman's rootless
layout: the store at $XDG_DATA_HOME/imagetool (default ~/.local/share/imagetool) and the
runtime's state at $XDG_RUNTIME_DIR/imagetool/runtime. Without XDG_RUNTIME_DIR (runuser and
su set none), /run/user/<uid> is used when it is the user's, else /tmp/imagetool-run-<uid>
(made 0700 and refused if someone else owns it). `--root` overrides the store only.

"Rootless" means: not root. A process inside imagetool's own user namespace (uid 0 there,
mapped to the user; IMAGETOOL_ROOTLESS_USERNS=1) is still rootless, and
IMAGETOOL_ROOTLESS_UID names the host user it stands for."""

from __future__ import annotations

import os

from imagetool.errors import ImagetoolError

ROOT_STORE = "/var/lib/imagetool"
ENV_UID = "IMAGETOOL_ROOTLESS_UID"
ENV_INSIDE = "IMAGETOOL_ROOTLESS_USERNS"


class RootlessPathError(ImagetoolError):
    pass


def _map_identity() -> bool:
    """True in the initial user namespace (uid_map is the whole identity range)."""
    try:
        with open("/proc/self/uid_map") as f:
            rows = [line.split() for line in f if line.strip()]
    except OSError:
        return True
    return rows == [["0", "0", "4294967295"]]


def host_uid() -> int:
    """The host uid imagetool acts for: the euid, or the user behind our user namespace."""
    env = os.environ.get(ENV_UID)
    if env and env.isdigit() and not _map_identity():
        return int(env)
    return os.geteuid()


def rootless() -> bool:
    """True for an ordinary user, and inside the user namespace imagetool entered for one;
    root anywhere else (a container's root included) keeps root's behaviour."""
    if os.geteuid() != 0:
        return True
    return os.environ.get(ENV_INSIDE) == "1" and not _map_identity()


def default_store() -> str:
    """The default --root for this user."""
    if not rootless():
        return ROOT_STORE
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "imagetool")


def _runtime_dir() -> str:
    uid = host_uid()
    env = os.environ.get("XDG_RUNTIME_DIR")
    if env:
        return env
    run = f"/run/user/{uid}"
    try:
        st = os.stat(run)
        if st.st_uid == os.geteuid() and os.access(run, os.W_OK):
            return run
    except OSError:
        pass
    tmp = f"/tmp/imagetool-run-{uid}"
    try:
        os.mkdir(tmp, 0o700)
    except FileExistsError:
        st = os.lstat(tmp)
        if st.st_uid != os.geteuid() or not os.path.isdir(tmp) or os.path.islink(tmp):
            raise RootlessPathError(f"{tmp} is not this user's directory: set XDG_RUNTIME_DIR "
                                    "to a private directory of yours") from None
    return tmp


def state_dir(store_root: str) -> str:
    """The runtime's --root for containers of the store at `store_root`."""
    if not rootless():
        return os.path.join(os.path.abspath(store_root), "runtime")
    return os.path.join(_runtime_dir(), "imagetool", "runtime")


def can_chown() -> bool:
    """May layers be unpacked with their owners? Root on the host, or the root of a user
    namespace that maps more than one id (a single-id map has nobody else to give files to)."""
    if os.geteuid() != 0:
        return False
    if not rootless():
        return True
    with open("/proc/self/uid_map") as f:
        return sum(int(line.split()[2]) for line in f if line.strip()) > 1


def overlay_xattr_ns() -> str:
    """"trusted." for root's snapshots, "user." for a rootless store's (overlayfs mounted with
    `userxattr` inside the user namespace: trusted.* is the host root's alone)."""
    return "user." if rootless() else "trusted."


def unmapped_hint(e: BaseException) -> str:
    """For an EINVAL from chown in a single-id namespace: what is wrong and the fix."""
    import errno
    if not isinstance(e, OSError) or e.errno != errno.EINVAL or not rootless() or can_chown():
        return ""
    import pwd
    try:
        name = pwd.getpwuid(host_uid()).pw_name
    except KeyError:
        name = str(host_uid())
    from imagetool.rootless.subids import add_command
    return (f" (an owner other than {name}: without subordinate ids only {name}'s own id is "
            f"mapped; as root, run {add_command(name)})")
