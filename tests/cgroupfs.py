"""What the cgroup tests share: where a process's cgroups are on the host, reading their
files, a detached container with given resources, its stats, and bounded waiting."""

from __future__ import annotations

import json
import os
import time

V1 = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


def _wait(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _cgroups_of(pid: int) -> dict[str, str]:
    """{controller: host directory} of a process, from /proc/<pid>/cgroup."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ["unified"]:
                mount = UNIFIED if c == "unified" else os.path.join(V1, c.replace("name=", ""))
                out[c] = os.path.join(mount, path.lstrip("/"))
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _start(pyrunc, bundle, args, resources=None, writable=False, cid=None,
           **linux) -> tuple[str, int]:
    bundle.config["process"]["args"] = args
    if resources is not None:
        bundle.config["linux"]["resources"] = resources
    bundle.config["linux"].update(linux)
    bundle.config["root"]["readonly"] = not writable
    bundle.write()
    cid = cid or pyrunc.new_id("cg")
    pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
    return cid, pyrunc.state(cid)["pid"]


def _stats(pyrunc, cid) -> dict:
    out = pyrunc("events", "--stats", cid, check=True).stdout.decode()
    ev = json.loads(out)
    assert ev["type"] == "stats" and ev["id"] == cid
    return ev["data"]


def _stopped(pyrunc, cid):
    return pyrunc.state(cid)["status"] == "stopped"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rindex(b")") + 2:][:1] not in (b"Z", b"X")


BUSY = ["sh", "-c", "while :; do :; done"]
