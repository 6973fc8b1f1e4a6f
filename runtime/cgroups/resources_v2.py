"""linux.resources -> cgroup v2 files (memory.max, pids.max, cpu.max, cpu.weight, unified)."""

from __future__ import annotations

import os

from runtime.cgroups.manager import write
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def _need(path: str, filename: str, field: str) -> None:
    if not os.path.exists(os.path.join(path, filename)):
        raise PyruncError(f"linux.resources.{field}: {filename} is not available in "
                          f"{path} (controller not enabled)")


def shares_to_weight(shares: int) -> int:
    """The kernel-documented conversion runc uses: [2, 262144] -> [1, 10000]."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def apply(path: str, r: dict[str, Any]) -> None:
    mem = r.get("memory") or {}
    if mem.get("limit") is not None:
        _need(path, "memory.max", "memory.limit")
        write(path, "memory.max", "max" if mem["limit"] < 0 else str(mem["limit"]))
    if mem.get("reservation") is not None:
        _need(path, "memory.low", "memory.reservation")
        write(path, "memory.low", str(mem["reservation"]))
    pids = r.get("pids") or {}
    if pids.get("limit") is not None:
        _need(path, "pids.max", "pids.limit")
        write(path, "pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]))
    cpu = r.get("cpu") or {}
    if cpu.get("shares"):
        _need(path, "cpu.weight", "cpu.shares")
        write(path, "cpu.weight", str(shares_to_weight(cpu["shares"])))
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        _need(path, "cpu.max", "cpu.quota")
        quota = cpu.get("quota")
        q = "max" if quota is None or quota < 0 else str(quota)
        write(path, "cpu.max", f"{q} {cpu.get('period') or 100000}")
    for key, value in (r.get("unified") or {}).items():
        if "/" in key or key.startswith("."):
            raise PyruncError(f"linux.resources.unified: bad key {key!r}")
        _need(path, key, f"unified.{key}")
        write(path, key, value)
