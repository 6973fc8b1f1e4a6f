"""OCI resource values both cgroup versions read the same way: the devices every
container may use, a device rule's access letters, an rdma limit's line. Below
resources_v1, resources_v2 and devices_bpf, which share them; imports none of them.
"""

from __future__ import annotations

from runtime.cgroups.common import number
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# Devices every container may use whatever the config says (runc's list).
DEFAULT_ALLOWED = [
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
]


def device_access(access: Any) -> str:
    """The r, w and m of a rule's access, in that order; like runc, other letters are
    ignored (so "rwa" is "rw"), and none of the three is an error. Unset means rwm."""
    if access is None or access == "":
        return "rwm"
    if not isinstance(access, str):
        raise PyruncError(f"linux.resources.devices: access must be a string, not {access!r}")
    kept = "".join(c for c in "rwm" if c in access)
    if not kept:
        raise PyruncError(f"linux.resources.devices: bad access {access!r} (none of r, w, m)")
    return kept


def rdma_line(dev: str, lim: dict[str, Any]) -> str:
    parts = [dev]
    if lim.get("hcaHandles") is not None:
        parts.append(f"hca_handle={number(lim['hcaHandles'], 'rdma.hcaHandles')}")
    if lim.get("hcaObjects") is not None:
        parts.append(f"hca_object={number(lim['hcaObjects'], 'rdma.hcaObjects')}")
    return " ".join(parts)
