"""Choose and describe the container's cgroup: the Manager of the host's cgroup version for
a new container, or the one state.json describes (load_manager), so later commands reuse it.
The top of runtime.cgroups: it uses the versions (v1.py, v2.py) and common.py; none of them
imports it.

A host is "v2" when /sys/fs/cgroup is itself cgroup2 (unified); otherwise it is v1 or
hybrid (v1 controllers, possibly with a cgroup2 mount holding no controllers beside them).
"""

import os

from runtime.cgroups.common import Manager, discover, own_cgroups
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Manager", "load_manager", "new_manager", "relative_path"]


def relative_path(cgroups_path: str, cid: str) -> tuple[str, bool]:
    """(path, absolute?) as runc reads linux.cgroupsPath: absolute paths are taken from the
    hierarchy root, relative ones (and the default, the id) from the runtime's own cgroup."""
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise PyruncError(f"linux.cgroupsPath: {cgroups_path!r} is a systemd slice path; "
                          "pyrunc manages cgroupfs only (no --systemd-cgroup)")
    p = os.path.normpath(cgroups_path) if cgroups_path else cid
    if ".." in p.split("/"):
        raise PyruncError(f"linux.cgroupsPath: {cgroups_path!r} must not contain '..'")
    return p, p.startswith("/")


def new_manager(cgroups_path: str, cid: str, root: str = "/sys/fs/cgroup") -> Manager:
    """The manager for a new container, chosen by what the host mounts at `root`."""
    path, absolute = relative_path(cgroups_path, cid)
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        from runtime.cgroups.v2 import V2Manager
        base = "/" if absolute else own_cgroups().get("", "/")
        return V2Manager(os.path.join(root, os.path.join(base, path).lstrip("/")), root)
    from runtime.cgroups.v1 import V1Manager
    mounts = discover()
    own = own_cgroups()
    paths: dict[str, str] = {}
    hier: dict[str, dict[str, Any]] = {}
    for m in mounts:
        if not m["mountpoint"].startswith(root.rstrip("/") + "/"):
            continue
        if m["fstype"] == "cgroup2":
            key, names = "", [""]
        else:
            names = m["controllers"] + [o for o in m["options"].split(",") if o.startswith("name=")]
            key = names[0] if names else ""
        base = "/" if absolute else own.get(key, "/")
        # The mount's root may itself be a sub-cgroup (inside a cgroup namespace).
        rel = os.path.relpath(os.path.join(base, path.lstrip("/")), m["root"])
        full = os.path.normpath(os.path.join(m["mountpoint"], rel))
        for n in names:
            paths[n or "unified"] = full
        hier[os.path.basename(m["mountpoint"])] = {
            "path": full, "fstype": m["fstype"], "options": m["options"],
            "mountpoint": m["mountpoint"]}
    return V1Manager(paths, hier)


def load_manager(state: "dict[str, Any]") -> Manager | None:
    cg = state.get("cgroup")
    if not cg:
        return None
    if cg.get("version") == 2:
        from runtime.cgroups.v2 import V2Manager
        return V2Manager(cg["unified"], cg.get("root", "/sys/fs/cgroup"))
    from runtime.cgroups.v1 import V1Manager
    return V1Manager(cg["paths"], cg.get("hierarchies", {}))
