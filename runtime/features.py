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
    mount_options = sorted(set(_FLAGS) | set(PROPAGATION) | recursive | {"tmpcopyup"})
    linux: dict[str, Any] = {
        "namespaces": [n for n in NAMESPACES
                       if n != "time" or os.path.exists("/proc/self/ns/time")],
        "capabilities": CAPS,
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                   "rdma": False},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": False}},
    }
    try:
        from runtime.linux import seccomp
        linux["seccomp"] = seccomp.features()
    except (ImportError, AttributeError, OSError):
        linux["seccomp"] = {"enabled": False}
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": mount_options,
        "linux": linux,
        "annotations": {"io.github.pyrunc.version": _version()},
    }


def _version() -> str:
    from runtime import __version__
    return __version__
