"""Users and groups of an image's rootfs, read from its /etc/passwd and /etc/group contents.

Two readings, because docker and BuildKit really differ:

- `resolve_user`: the USER of a container (docker's and runc's rules): a numeric user takes
  its primary gid from its passwd entry (0 without one), a name must exist, and every group
  listing the user is a supplementary group unless a group was named.
- `chown_ids`: BuildKit's reading of COPY/ADD --chown (and WORKDIR under USER): a bare id is
  both uid and gid (no passwd lookup at all), a name gives its uid and primary gid, and no
  supplementary groups exist."""

from __future__ import annotations

from typing import Any

from imagetool.errors import ImagetoolError


class ConvertError(ImagetoolError, ValueError):
    """The image config cannot become a runtime spec (no command, unknown user, ...)."""


def read_table(data: bytes | None) -> list[list[str]]:
    """The colon-separated rows of a passwd or group file (comments and blanks left out)."""
    if not data:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _num(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2 ** 32 - 1 else None


def resolve_user(spec: str, passwd: bytes | None, group: bytes | None) -> dict[str, Any]:
    """Docker's USER grammar (user, uid, user:group, uid:gid, ...) against the rootfs's
    /etc/passwd and /etc/group contents (None when absent). Returns {uid, gid,
    additionalGids, home}: additionalGids holds the primary group and, unless a group was
    named, every group listing the user as a member. A name that is not in the files is an
    error; a number need not be (gid 0 and home / then, as in runc)."""
    user_part, _, group_part = (spec or "").partition(":")
    users = [r for r in read_table(passwd) if len(r) >= 7]
    groups = [r for r in read_table(group) if len(r) >= 3]
    uid, gid, home, name = 0, 0, "/", "root" if not user_part else None
    entry = None
    if not user_part:
        entry = next((r for r in users if _num(r[2]) == 0), None)
    elif (n := _num(user_part)) is not None:
        uid = n
        entry = next((r for r in users if _num(r[2]) == n), None)
    else:
        entry = next((r for r in users if r[0] == user_part), None)
        if entry is None:
            where = "passwd file" if passwd is not None else "passwd file (none in the image)"
            raise ConvertError(f"unable to find user {user_part}: no matching entries in "
                               f"{where}")
    if entry is not None:
        name, home = entry[0], entry[5] or "/"
        uid = n_uid if (n_uid := _num(entry[2])) is not None else uid
        gid = n_gid if (n_gid := _num(entry[3])) is not None else 0
    extra: list[int] = []  # the primary group goes first, as docker lists it
    if group_part:
        if (n := _num(group_part)) is not None:
            gid = n
        else:
            g = next((r for r in groups if r[0] == group_part), None)
            if g is None or _num(g[2]) is None:
                raise ConvertError(f"unable to find group {group_part}: no matching entries "
                                   "in group file")
            gid = _num(g[2])  # type: ignore[assignment]
    elif name:
        for g in groups:
            members = [m for m in g[3].split(",") if m] if len(g) > 3 else []
            n = _num(g[2])
            if name in members and n is not None and n != gid and n not in extra:
                extra.append(n)
    return {"uid": uid, "gid": gid, "home": home, "additionalGids": [gid, *extra]}


def chown_ids(spec: str, passwd: bytes | None, group: bytes | None) -> tuple[int, int]:
    """USER[:GROUP] as BuildKit reads --chown: names looked up in the files given (their uid
    and primary gid, or the group's gid), a bare id used for both uid and gid. ConvertError
    `unable to find user|group NAME: ...` for a name not in the files."""
    user, _, grp = spec.partition(":")

    def look(name: str, table: list[list[str]], what: str) -> list[str]:
        for r in table:
            if len(r) >= 4 and r[0] == name and r[2].isdigit():
                return r
        raise ConvertError(f"unable to find {what} {name}: no matching entries in the {what} "
                           "file")
    uid = gid = 0
    if user.isdigit():
        uid = gid = int(user)
    elif user:
        row = look(user, read_table(passwd), "user")
        uid, gid = int(row[2]), int(row[3]) if row[3].isdigit() else int(row[2])
    if grp:
        gid = int(grp) if grp.isdigit() else int(look(grp, read_table(group), "group")[2])
    return uid, gid
