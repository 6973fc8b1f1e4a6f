"""Acting on a running container through the runtime library: signals, stop (the stop
signal, then SIGKILL), pause/resume. A user's stop, kill or rm marks the record
(ManualStop) first, so a restart policy does not bring the container back."""

from __future__ import annotations

import contextlib
import signal
import time

from imagetool.run.options import parse_signal
from imagetool.run.records import ContainerError, Records, monitor_alive, status


def kill_runtime(recs: Records, cid: str, sig: int) -> None:
    from runtime.container import Container
    from runtime.errors import PyruncError
    try:
        Container(recs.runtime_root, cid).kill(sig)
    except PyruncError as e:
        raise ContainerError(f"container {cid[:12]} is not running ({e})") from None


def wait_exit(recs: Records, cid: str, timeout: float) -> bool:
    """Wait until the container has exited and its monitor is gone (or the record is)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rec = recs.load(cid)
        except ContainerError:
            return True
        if status(rec) in ("exited", "dead", "created") and not monitor_alive(rec):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def mark_stopped_by_user(recs: Records, cid: str) -> None:
    with contextlib.suppress(ContainerError):
        recs.update(cid, ManualStop=True)


def stop(recs: Records, cid: str, sig_text: str | None, timeout: float) -> None:
    """docker stop: the signal (default: the image's STOPSIGNAL), SIGKILL after `timeout`
    seconds; returns when the monitor is gone. Ends restarts."""
    rec = recs.load(cid)
    if not monitor_alive(rec):
        return
    mark_stopped_by_user(recs, cid)
    st = status(rec)
    if st in ("running", "paused"):
        sig = parse_signal(sig_text or rec["Config"].get("StopSignal"))
        with contextlib.suppress(ContainerError):
            kill_runtime(recs, cid, sig)
        if st == "paused":
            with contextlib.suppress(ContainerError):
                resume(recs, cid)
    if not wait_exit(recs, cid, timeout):
        with contextlib.suppress(ContainerError):
            kill_runtime(recs, cid, signal.SIGKILL)
        if not wait_exit(recs, cid, 30):
            raise ContainerError(f"container {cid[:12]} did not stop")


def pause(recs: Records, cid: str) -> None:
    """Freeze every process of a running container (its cgroup's freezer)."""
    from runtime.container import Container
    from runtime.errors import PyruncError
    rec = recs.load(cid)
    st = status(rec)
    if st == "paused":
        raise ContainerError(f"container {cid[:12]} is already paused")
    if st != "running":
        raise ContainerError(f"container {cid[:12]} is not running")
    try:
        Container(recs.runtime_root, cid).pause()
    except PyruncError as e:
        raise ContainerError(f"cannot pause container {cid[:12]}: {e}") from None
    from imagetool.run import events
    events.record(recs.root, "pause", recs.update(cid, Status="paused", Paused=True))


def resume(recs: Records, cid: str) -> None:
    from runtime.container import Container
    from runtime.errors import PyruncError
    rec = recs.load(cid)
    if status(rec) != "paused":
        raise ContainerError(f"container {cid[:12]} is not paused")
    try:
        Container(recs.runtime_root, cid).resume()
    except PyruncError as e:
        raise ContainerError(f"cannot unpause container {cid[:12]}: {e}") from None
    with recs.lock():
        r = recs.load(cid)
        if r["State"].get("Status") == "paused":
            r["State"].update(Status="running", Paused=False)
        recs.save(r)
    from imagetool.run import events
    events.record(recs.root, "unpause", r)
