"""Restart policies as docker has them: no, on-failure[:N], always, unless-stopped (the
same as always here: nothing restarts containers across a host reboot). The monitor asks
`wanted()` after each exit; a user's stop/kill/rm sets the record's ManualStop first, which
ends the restarts."""

from __future__ import annotations

from typing import Any

from imagetool.run.records import ContainerError, Records

POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse(text: str | None) -> dict[str, Any]:
    """`--restart` -> docker's HostConfig.RestartPolicy {"Name", "MaximumRetryCount"}."""
    name, _, count = (text or "no").partition(":")
    if name not in POLICIES:
        raise ContainerError(f"--restart {text}: want one of no, on-failure[:N], always, "
                             "unless-stopped")
    if count and name != "on-failure":
        raise ContainerError(f"--restart {text}: only on-failure takes a retry count")
    if count and (not count.isdigit()):
        raise ContainerError(f"--restart {text}: the retry count must be a number")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def wanted(recs: Records, cid: str, code: int) -> bool:
    """Should the monitor start `cid` again after it exited with `code`?"""
    try:
        rec = recs.load(cid)
    except ContainerError:
        return False
    if (rec.get("State") or {}).get("ManualStop") or \
            (rec.get("HostConfig") or {}).get("AutoRemove"):
        return False
    policy = (rec.get("HostConfig") or {}).get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return code != 0 and (limit == 0 or int(rec.get("RestartCount") or 0) < limit)
    return False


def prepare(recs: Records, cid: str) -> None:
    """Count the restart and remake the bundle the last run's cleanup removed."""
    from imagetool.run import bundles
    from imagetool.store import Store
    with recs.lock():
        rec = recs.load(cid)
        rec["RestartCount"] = int(rec.get("RestartCount") or 0) + 1
        rec["State"]["Status"] = "restarting"
        recs.save(rec)
    bundles.make_bundle(Store(recs.root), recs, cid)
