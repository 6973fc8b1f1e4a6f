"""`pyrunc features`: the runtime-spec features.md document, built from the tables the
runtime actually uses, so it can't claim what pyrunc does not do."""

from __future__ import annotations

import os

from runtime import OCI_VERSION
from runtime.linux.capabilities import CAPS
from runtime.linux.mounts import (
    _FLAGS,
    PROPAGATION,
    RECURSIVE,
    RECURSIVE_ATIME,
    has_mount_setattr,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]
NAMESPACES = ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]


def features() -> dict[str, Any]:
    # The recursive options only where the kernel has mount_setattr(2) (Linux 5.12).
    recursive = set(RECURSIVE) | set(RECURSIVE_ATIME) if has_mount_setattr() else set()
    # idmap/ridmap: idmapped bind mounts (idmap.py), which need mount_setattr(2) too.
    idmap = {"idmap", "ridmap"} if recursive else set()
    mount_options = sorted(set(_FLAGS) | set(PROPAGATION) | recursive | idmap | {"tmpcopyup"})
    linux: dict[str, Any] = {
        "namespaces": [n for n in NAMESPACES
                       if n != "time" or os.path.exists("/proc/self/ns/time")],
        "capabilities": CAPS,
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                   "rdma": False},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": True}},
        "netDevices": {"enabled": True},
    }
    from runtime.linux.process_attrs import MPOL_FLAGS, MPOL_MODES
    linux["memoryPolicy"] = {"modes": sorted(MPOL_MODES), "flags": sorted(MPOL_FLAGS)}
    linux["seccomp"], libseccomp = _seccomp()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": mount_options,
        "linux": linux,
        "annotations": {"io.github.pyrunc.version": _version(),
                        **({"io.github.seccomp.libseccomp.version": libseccomp}
                           if libseccomp else {})},
        # No config annotation changes what pyrunc does (runc lists e.g. org.criu.config).
        "potentiallyUnsafeConfigAnnotations": [],
    }


def _seccomp() -> tuple[dict[str, Any], str]:
    """The seccomp tables seccomp.py checks configs against; disabled without libseccomp.
    WAIT_KILLABLE_RECV is known but needs libseccomp 2.6 (and Linux 5.19) to be used."""
    from runtime.errors import PyruncError
    from runtime.linux import seccomp
    try:
        version = seccomp.version()
    except (PyruncError, OSError, AttributeError):
        return {"enabled": False}, ""
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    supported = [f for f in sorted(seccomp.FLAGS)
                 if f != "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" or major_minor >= (2, 6)]
    return {"enabled": True, "actions": sorted(seccomp.ACTIONS),
            "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHES),
            "knownFlags": sorted(seccomp.FLAGS), "supportedFlags": supported}, version


def _version() -> str:
    from runtime import __version__
    return __version__
