"""The user's subordinate id ranges (/etc/subuid, /etc/subgid) and the id maps built from them.

A full map puts the user at 0 and the first subordinate range at 1..count, as podman does;
it needs newuidmap/newgidmap (Debian package `uidmap`). Without a range in either file, the
fallback is a single-id map (only the user, at 0) and a warning saying what is lost and the
one command that adds a range."""

from __future__ import annotations

import os
import pwd

from imagetool.errors import ImagetoolError

SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
EXAMPLE_RANGE = "100000-165535"


class SubidError(ImagetoolError):
    pass


class IdMap:
    """uid_map/gid_map rows (inside, outside, count); `full` when newuidmap must write them.
    (A plain class: dataclasses costs ~9 ms of imports on every rootless command.)"""

    def __init__(self, uids: list[tuple[int, int, int]], gids: list[tuple[int, int, int]],
                 full: bool = False, warning: str = "") -> None:
        self.uids, self.gids, self.full, self.warning = uids, gids, full, warning

    def size(self) -> int:
        return sum(r[2] for r in self.uids)


def ranges(path: str, name: str, uid: int) -> list[tuple[int, int]]:
    """(start, count) of every line of `path` for the user (by name or uid), in file order."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        owner, _, rest = line.partition(":")
        start, _, count = rest.partition(":")
        if owner not in (name, str(uid)):
            continue
        if not (start.isdigit() and count.isdigit()) or int(count) == 0:
            raise SubidError(f"{path}:{n}: not NAME:START:COUNT: {line!r}")
        out.append((int(start), int(count)))
    return out


def add_command(name: str) -> str:
    return f"usermod --add-subuids {EXAMPLE_RANGE} --add-subgids {EXAMPLE_RANGE} {name}"


def plan(uid: int | None = None, gid: int | None = None, name: str | None = None,
         subuid: str = SUBUID, subgid: str = SUBGID) -> IdMap:
    """The map for the user (default: the caller). Raises SubidError when a range exists but
    newuidmap/newgidmap are missing; falls back to one id (with `warning`) when no range."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
    us, gs = ranges(subuid, name, uid), ranges(subgid, name, uid)
    single = IdMap([(0, uid, 1)], [(0, gid, 1)])
    if not us or not gs:
        missing = subuid if not us else subgid
        return IdMap(single.uids, single.gids, warning=(
            f"no subordinate ids for {name} in {missing}: using a single-id mapping (files "
            f"of other owners become {name}'s); as root, add a range with: "
            f"{add_command(name)}"))
    for tool in ("newuidmap", "newgidmap"):
        if which(tool) is None:
            raise SubidError(f"{tool} not found: install Debian's uidmap package "
                             f"(a range for {name} is in {subuid})")
    return IdMap(_rows(uid, us), _rows(gid, gs), full=True)


def which(name: str) -> str | None:
    """shutil.which without shutil's imports."""
    for d in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _rows(own: int, rs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    rows, inside = [(0, own, 1)], 1
    for start, count in rs:
        rows.append((inside, start, count))
        inside += count
    return rows


def require_full(m: IdMap, name: str) -> None:
    """For callers that cannot work with one id: the one-line error naming the file."""
    if not m.full:
        raise SubidError(f"{name} has no subordinate ids in {SUBUID}/{SUBGID}: as root, run "
                         f"{add_command(name)}")
