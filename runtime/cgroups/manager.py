"""Choose and describe the container's cgroup: discovery of the host's hierarchies, the
Manager interface, and (de)serialisation into state.json so later commands reuse it.

A host is "v2" when /sys/fs/cgroup is itself cgroup2 (unified); otherwise it is v1 or
hybrid (v1 controllers, possibly with a cgroup2 mount holding no controllers beside them).
"""

from __future__ import annotations

import errno
import os
import time

from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def discover(mountinfo: str = "/proc/self/mountinfo") -> list[dict[str, Any]]:
    """Every cgroup/cgroup2 mount: mountpoint, fstype, super options, controllers, root."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _src, superopts = (post.split() + ["", "", ""])[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            opts = superopts.split(",")
            ctrls = [o for o in opts if o not in ("rw", "ro") and "=" not in o
                     and not o.startswith("no") and o not in ("clone_children",
                                                             "xattr", "nsdelegate",
                                                             "memory_recursiveprot")]
            names = [o for o in opts if o.startswith("name=")]
            out.append({"mountpoint": _unescape(fields[4]), "root": _unescape(fields[3]),
                        "fstype": fstype, "controllers": ctrls if fstype == "cgroup" else [],
                        "options": ",".join(ctrls + names)})
    return out


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """{controller-or-name: path} of this process; '' keys the unified hierarchy."""
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            _id, ctrls, cg = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = cg
    return out


class Manager:
    """The operations every cgroup version provides to the runtime."""

    version = 0

    def create(self) -> None:
        raise NotImplementedError

    def apply(self, pid: int) -> None:
        raise NotImplementedError

    def set(self, resources: dict[str, Any]) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        raise NotImplementedError


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
    mounts = discover()
    own = own_cgroups()
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        from runtime.cgroups.v2 import V2Manager
        base = "/" if absolute else own.get("", "/")
        return V2Manager(os.path.join(root, os.path.join(base, path).lstrip("/")))
    from runtime.cgroups.v1 import V1Manager
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
            "path": full, "fstype": m["fstype"], "options": m["options"]}
    return V1Manager(paths, hier)


def load_manager(state: dict[str, Any]) -> Manager | None:
    cg = state.get("cgroup")
    if not cg:
        return None
    if cg.get("version") == 2:
        from runtime.cgroups.v2 import V2Manager
        return V2Manager(cg["unified"])
    from runtime.cgroups.v1 import V1Manager
    return V1Manager(cg["paths"], cg.get("hierarchies", {}))


def write(path: str, name: str, value: str) -> None:
    """Write one cgroup file; the error names the file and the kernel's reason."""
    try:
        with open(os.path.join(path, name), "w") as f:
            f.write(value)
    except OSError as e:
        raise PyruncError(f"cgroup {os.path.join(path, name)}: cannot write {value!r}: "
                          f"{e.strerror}") from None


def read_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def rmdir_retry(path: str, tries: int = 50) -> None:
    """rmdir a cgroup; EBUSY lasts until the kernel finishes reaping the last task."""
    for _ in range(tries):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    raise PyruncError(f"cgroup {path}: still busy after {tries} tries")
