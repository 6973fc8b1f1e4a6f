"""A container's life as the record describes it: `create()` writes the record (every
setting `run`/`create` took, so the container can be started again) and its bundle;
its bundle is (re)made by bundles.make_bundle() (a started-then-exited container has
lost its overlay); `start()` launches the monitor and waits for its first word. Errors:
ContainerError, or StartError carrying docker's exit status (125/126/127)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from imagetool.run import exitcodes
from imagetool.run.bundles import make_bundle
from imagetool.run.records import ContainerError, Records


class StartError(ContainerError):
    """The container could not start; `code` is the status `run` exits with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class NoCommand(ContainerError):
    pass


def create(store: Any, recs: Records, image: str | dict[str, Any], given: str,
           name: str | None, config: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Record a new container of the store image `image` (a store name, or its
    image_parts() already read; `given`: as the user named it) and make its bundle; on
    failure nothing is left. Returns the record."""
    from imagetool import bundle, convert
    parts = bundle.image_parts(store, image) if isinstance(image, str) else image
    iconf = parts["config"].get("config") or {}
    try:   # unlike unpack (umoci's sh), run refuses an image without a command, as docker does
        convert.command(iconf, config.get("Entrypoint"), config.get("Cmd"))
    except convert.ConvertError:
        raise NoCommand(f"no command specified: nothing to run for {parts['name']} (no "
                        "Entrypoint or Cmd): give a command after the image") from None
    config = dict(config, Image=given,
                  StopSignal=config.get("StopSignal") or iconf.get("StopSignal") or "SIGTERM")
    rec = recs.new(name, {"Image": parts["name"], "ImageID": parts["config_desc"]["digest"],
                          "Path": "", "Args": [], "Config": config, "HostConfig": host,
                          "State": {}, "RestartCount": 0, "Mounts": mount_docs(recs, host)})
    try:
        make_bundle(store, recs, rec["Id"], parts)
    except BaseException:
        recs.remove(rec["Id"])
        raise
    from imagetool.run import events
    rec = recs.load(rec["Id"])
    events.record(recs.root, "create", rec)
    return rec


def mount_docs(recs: Records, host: dict[str, Any]) -> list[dict[str, Any]]:
    """docker inspect's Mounts: binds, volumes and tmpfs mounts."""
    out = []
    for m in host.get("OciMounts") or []:
        rw = "ro" not in (m.get("options") or [])
        out.append({"Type": m["type"], "Source": m.get("source", "") if m["type"] == "bind"
                    else "", "Destination": m["destination"], "Mode": "" if rw else "ro",
                    "RW": rw, "Propagation": "rprivate" if m["type"] == "bind" else ""})
    for v in host.get("Volumes") or []:
        out.append({"Type": "volume", "Name": v["Name"],
                    "Source": os.path.join(recs.root, "volumes", v["Name"], "_data"),
                    "Destination": v["Destination"], "Driver": "local",
                    "Mode": "ro" if v.get("ReadOnly") else "z", "RW": not v.get("ReadOnly"),
                    "Propagation": ""})
    return out


def read_status(fd: int) -> Any:
    """(first JSON message of the monitor's status pipe, bytes after it), or None."""
    buf = b""
    while b"\n" not in buf:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return json.loads(line), rest


def start(store: Any, recs: Records, cid: str, foreground: bool,
          interactive: bool) -> tuple[int, bytes]:
    """Launch the monitor of `cid` (remaking its bundle when it has none); return (status
    fd, bytes read past the 'started' message). Raises StartError when it did not start;
    a container that never ran is then removed only if `remove_on_error` is set in the
    record (run), kept otherwise (start)."""
    from imagetool.run import monitor
    if not os.path.exists(recs.path(cid, "bundle", "config.json")):
        make_bundle(store, recs, cid)
    fd = monitor.launch(recs.root, cid, foreground, interactive)
    try:
        got = read_status(fd)
    except BaseException:   # Ctrl-C: nothing may run on unwatched
        _interrupted(recs, cid, fd)
        raise
    if got is None or "started" not in got[0]:
        os.close(fd)
        msg = got[0].get("error") if got else "the monitor died"
        code = exitcodes.for_start_error(msg or "")
        recs.update(cid, Status="exited" if code != exitcodes.TOOL_FAILED else "created",
                    ExitCode=code if code != exitcodes.TOOL_FAILED else 0, Error=msg)
        raise StartError(f"cannot start container: {msg}", code)
    return fd, got[1]


def _interrupted(recs: Records, cid: str, fd: int) -> None:
    """Ctrl-C while the monitor was starting `cid`: let it say its first word, and if the
    container started, kill it and wait for the monitor's exit message (it has cleaned up
    by then). A second Ctrl-C gives up waiting."""
    import signal

    from imagetool.run import control
    try:
        got = read_status(fd)
        if got is not None and "started" in got[0]:
            control.mark_stopped_by_user(recs, cid)
            with contextlib.suppress(ContainerError):
                control.kill_runtime(recs, cid, signal.SIGKILL)
            rest = got[1]
            while b"\n" not in rest:
                try:
                    chunk = os.read(fd, 4096)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                rest += chunk
    finally:
        os.close(fd)


def remove(recs: Records, cid: str) -> None:
    """Remove what a dead monitor could not clean, and the record: the runtime container,
    network address, bundle (a `destroy` event is logged)."""
    from imagetool import bundle
    from imagetool.run import events, network
    from runtime.container import Container
    from runtime.errors import PyruncError
    with contextlib.suppress(PyruncError, OSError):
        Container(recs.runtime_root, cid).delete(True, lambda m: None)
    with contextlib.suppress(Exception):
        network.release(recs.root, cid)
    if os.path.isdir(recs.path(cid, "bundle")):
        bundle.remove(recs.path(cid, "bundle"))
    with contextlib.suppress(ContainerError):
        events.record(recs.root, "destroy", recs.load(cid))
    recs.remove(cid)
