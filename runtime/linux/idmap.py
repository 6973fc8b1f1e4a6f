"""Idmapped bind mounts (runtime-spec 1.1 `mounts[].uidMappings/gidMappings`, 1.2 `idmap`
and `ridmap`): file owners on the source are seen through the mount's mappings.

`create` makes each such mount before the init exists, as host root, in the host's mount
namespace: a user namespace holding the mappings (a short-lived helper process's), a
detached copy of the source (open_tree), then MOUNT_ATTR_IDMAP on it. The init inherits the
fd and moves the mount into place (mounts.py): a container in its own user namespace could
neither write host mappings nor idmap a host filesystem itself.

The mappings read as for linux.uidMappings: an owner `containerID + n` on the source shows
as `hostID + n` through the mount. Without mappings, `idmap`/`ridmap` use the container's
user namespace mappings, as runtime-spec 1.2 says.
"""

from __future__ import annotations

import os

from runtime.errors import ConfigError, PyruncError
from runtime.linux import syscalls as sc

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def wanted(m: dict[str, Any]) -> bool:
    opts = m.get("options") or []
    return bool(m.get("uidMappings") or m.get("gidMappings") or "idmap" in opts
                or "ridmap" in opts)


def _is_bind(m: dict[str, Any]) -> bool:
    opts = m.get("options") or []
    return m.get("type") == "bind" or "bind" in opts or "rbind" in opts


def _maps_text(maps: Any, path: str) -> str:
    if not isinstance(maps, list):
        raise ConfigError(path, "must be an array")
    lines = []
    for i, e in enumerate(maps):
        if not isinstance(e, dict):
            raise ConfigError(f"{path}[{i}]", "must be an object")
        for k in ("containerID", "hostID", "size"):
            v = e.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 0xFFFFFFFF:
                raise ConfigError(f"{path}[{i}].{k}", "must be an integer from 0 to 4294967295")
        if e["size"] < 1:
            raise ConfigError(f"{path}[{i}].size", "must be at least 1")
        lines.append(f"{e['containerID']} {e['hostID']} {e['size']}\n")
    return "".join(lines)


def plan(spec: dict[str, Any]) -> dict[int, tuple[str, str, bool]]:
    """{mount index: (uid_map text, gid_map text, recursive)} for every idmapped mount;
    ConfigError naming the mount's field for anything that can't be done."""
    linux = spec.get("linux") or {}
    has_userns = any(n.get("type") == "user" for n in linux.get("namespaces") or [])
    out: dict[int, tuple[str, str, bool]] = {}
    for i, m in enumerate(spec.get("mounts") or []):
        if not isinstance(m, dict) or not wanted(m):
            continue
        p = f"mounts[{i}]"
        if not _is_bind(m):
            raise ConfigError(p, "idmapped mounts are supported for bind mounts only "
                                 "(type bind or option bind/rbind)")
        uids, gids = m.get("uidMappings"), m.get("gidMappings")
        if bool(uids) != bool(gids):
            missing = "gidMappings" if uids else "uidMappings"
            raise ConfigError(f"{p}.{missing}", "uidMappings and gidMappings must be given "
                                                "together")
        if uids:
            umap, gmap = _maps_text(uids, f"{p}.uidMappings"), _maps_text(gids, f"{p}.gidMappings")
        else:
            if not has_userns or not linux.get("uidMappings"):
                raise ConfigError(f"{p}.uidMappings", "idmap without mappings takes the "
                                  "container's user namespace mappings, and it has none")
            umap = _maps_text(linux["uidMappings"], "linux.uidMappings")
            gmap = _maps_text(linux.get("gidMappings") or [], "linux.gidMappings")
        out[i] = (umap, gmap, "ridmap" in (m.get("options") or []))
    return out


def _userns_with(umap: str, gmap: str, where: str) -> int:
    """An fd on a fresh user namespace with these maps, owned by a helper that exits."""
    r, w = os.pipe()
    pid = sc.clone(sc.CLONE_NEWUSER)
    if pid == 0:
        os.close(w)
        try:
            os.read(r, 1)  # until the parent is done with our namespace
        finally:
            os._exit(0)
    os.close(r)
    try:
        for fname, text, field in (("uid_map", umap, "uidMappings"),
                                   ("gid_map", gmap, "gidMappings")):
            try:
                with open(f"/proc/{pid}/{fname}", "w") as f:
                    f.write(text)
            except OSError as e:
                raise PyruncError(f"{where}.{field}: cannot write {fname}: "
                                  f"{e.strerror}") from None
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def prepare(spec: dict[str, Any], bundle: str,
            planned: dict[int, tuple[str, str, bool]]) -> dict[int, int]:
    """{mount index: fd of a detached idmapped mount}; on failure nothing stays open."""
    mounts = spec.get("mounts") or []
    out: dict[int, int] = {}
    users: dict[tuple[str, str], int] = {}
    try:
        for i, (umap, gmap, recursive) in planned.items():
            m = mounts[i]
            where = f"mounts[{i}]"
            src = m.get("source") or ""
            if not src.startswith("/"):
                src = os.path.join(bundle, src)
            if (umap, gmap) not in users:
                users[(umap, gmap)] = _userns_with(umap, gmap, where)
            try:
                tree = sc.open_tree_detached(src, "rbind" in (m.get("options") or []))
            except OSError as e:
                raise PyruncError(f"{where}.source: cannot open {src}: {e.strerror}") from None
            out[i] = tree
            try:
                sc.mount_setattr_idmap(tree, users[(umap, gmap)], recursive)
            except OSError as e:
                raise PyruncError(f"{where}: cannot idmap {src}: {_why(e, src)}") from None
        return out
    except BaseException:
        for fd in out.values():
            os.close(fd)
        raise
    finally:
        for fd in users.values():
            os.close(fd)


def _why(e: OSError, src: str) -> str:
    if e.errno == 22:  # EINVAL: the filesystem lacks FS_ALLOW_IDMAP (or a submount does)
        fs = fstype(src)
        return (f"the {fs} filesystem there does not support idmapped mounts" if fs
                else "its filesystem does not support idmapped mounts")
    if e.errno == 38:
        return "idmapped mounts need mount_setattr(2) (Linux 5.12 or later)"
    return e.strerror or str(e)


def fstype(path: str) -> str:
    """The filesystem type of the mount holding `path` ('' if unknown)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            mnt_id = next((ln.split()[1] for ln in f if ln.startswith("mnt_id:")), "")
        with open("/proc/self/mountinfo") as f:
            for ln in f:
                parts = ln.split()
                if parts[0] == mnt_id:
                    return parts[parts.index("-") + 1]
    except OSError:
        pass
    finally:
        os.close(fd)
    return ""
