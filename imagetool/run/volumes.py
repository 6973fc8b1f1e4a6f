"""Named volumes, docker's "local" driver: <store root>/volumes/<name>/_data, described by
volume.json beside it (CreatedAt, Labels, Anonymous, and whether the image's content was
copied up yet). `-v NAME:/path`, `-v /path` (anonymous) and `--mount type=volume` use
them; a new, empty volume gets the image's files at its path the first time it is
mounted, as docker does. A volume a container (in any state) names is in use."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from typing import Any

from imagetool.run.records import ContainerError, Records, now

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _dir(root: str, name: str) -> str:
    return os.path.join(os.path.abspath(root), "volumes", name)


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or len(name) > 255:
        raise ContainerError(f"invalid volume name {name!r} (letters, digits, _ . -, "
                             "starting with a letter or digit)")


def _meta(root: str, name: str) -> dict[str, Any]:
    try:
        with open(os.path.join(_dir(root, name), "volume.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ContainerError(f"no such volume: {name}") from None


def _save(root: str, name: str, meta: dict[str, Any]) -> None:
    path = os.path.join(_dir(root, name), "volume.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.rename(tmp, path)


def create(root: str, name: str | None = None, labels: dict[str, str] | None = None,
           anonymous: bool = False) -> str:
    """Make the volume (an existing one is kept, as docker does); return its name."""
    name = name or secrets.token_hex(32)
    check_name(name)
    with Records(root).lock():
        d = _dir(root, name)
        if os.path.exists(os.path.join(d, "volume.json")):
            return name
        os.makedirs(os.path.join(d, "_data"), mode=0o755, exist_ok=True)
        _save(root, name, {"Name": name, "Driver": "local", "CreatedAt": now(),
                           "Labels": labels or {}, "Anonymous": anonymous,
                           "Scope": "local", "CopiedUp": False})
    return name


def names(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(os.path.join(os.path.abspath(root), "volumes"))
                      if os.path.isfile(os.path.join(_dir(root, n), "volume.json")))
    except FileNotFoundError:
        return []


def inspect(root: str, name: str) -> dict[str, Any]:
    """docker's `volume inspect` document."""
    meta = _meta(root, name)
    return {"CreatedAt": meta.get("CreatedAt", ""), "Driver": "local",
            "Labels": meta.get("Labels") or {},
            "Mountpoint": os.path.join(_dir(root, name), "_data"), "Name": name,
            "Options": {}, "Scope": "local"}


def users(root: str, name: str) -> list[str]:
    """Ids of the containers whose record names the volume."""
    return [r["Id"] for r in Records(root).all()
            if any(v.get("Name") == name for v in (r.get("HostConfig") or {}).get("Volumes")
                   or [])]


def remove(root: str, name: str, force: bool = False) -> None:
    _meta(root, name)
    used = users(root, name)
    if used and not force:
        raise ContainerError(f"remove {name}: volume is in use - [{', '.join(used)}]")
    shutil.rmtree(_dir(root, name))


def prune(root: str, all_named: bool = False) -> list[str]:
    """Remove unused volumes: anonymous ones (docker 23's default), or all with all_named."""
    gone = []
    for n in names(root):
        meta = _meta(root, n)
        if (all_named or meta.get("Anonymous")) and not users(root, n):
            shutil.rmtree(_dir(root, n))
            gone.append(n)
    return gone


def oci_mounts(root: str, vols: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bind mounts of the record's volumes ({"Name", "Destination", "ReadOnly"});
    volumes removed meanwhile are made again, as docker would."""
    out = []
    for v in vols:
        create(root, v["Name"], anonymous=bool(v.get("Anonymous")))
        opts = ["rbind", "ro" if v.get("ReadOnly") else "rw"]
        out.append({"destination": v["Destination"], "type": "bind",
                    "source": os.path.join(_dir(root, v["Name"]), "_data"), "options": opts})
    return out


def copy_up(root: str, vols: list[dict[str, Any]], rootfs: str) -> None:
    """Fill each new, empty volume with what the image has at its path (once)."""
    from imagetool.run.cp import resolve_in
    for v in vols:
        create(root, v["Name"], anonymous=bool(v.get("Anonymous")))
        meta = _meta(root, v["Name"])
        if meta.get("CopiedUp"):
            continue
        data = os.path.join(_dir(root, v["Name"]), "_data")
        src = resolve_in(rootfs, v["Destination"], follow_last=True)
        if not os.listdir(data) and os.path.isdir(src):
            shutil.copytree(src, data, symlinks=True, dirs_exist_ok=True)
            st = os.stat(src)
            os.chmod(data, st.st_mode & 0o7777)
            os.chown(data, st.st_uid, st.st_gid)
        meta["CopiedUp"] = True
        _save(root, v["Name"], meta)


def remove_anonymous(root: str, rec: dict[str, Any]) -> None:
    """With the container (rm -v, --rm): its anonymous volumes no other container uses."""
    for v in (rec.get("HostConfig") or {}).get("Volumes") or []:
        if v.get("Anonymous") and set(users(root, v["Name"])) <= {rec["Id"]}:
            shutil.rmtree(_dir(root, v["Name"]), ignore_errors=True)
