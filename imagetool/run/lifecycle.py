"""A container's life as the record describes it: `create()` writes the record (every
setting `run`/`create` took, so the container can be started again) and its bundle;
`make_bundle()` (re)makes the bundle from the record (a started-then-exited container has
lost its overlay); `start()` launches the monitor and waits for its first word. Errors:
ContainerError, or StartError carrying docker's exit status (125/126/127)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from imagetool.run import exitcodes
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


def make_bundle(store: Any, recs: Records, cid: str,
                parts: dict[str, Any] | None = None) -> None:
    """The bundle (overlay rootfs + config.json, written once by runspec) and /etc files of
    the record `cid`; `parts`: the image's image_parts() when the caller has read them."""
    from imagetool import bundle, runspec
    rec = recs.load(cid)
    conf, host = rec["Config"], rec["HostConfig"]
    bpath = recs.path(cid, "bundle")
    if os.path.isdir(bpath):
        bundle.remove(bpath)
    hostname = conf.get("Hostname") or cid[:12]
    env = [f"HOSTNAME={hostname}"] + (["TERM=xterm"] if conf.get("Tty") else []) + \
        list(conf.get("Env") or [])
    mode = host.get("NetworkMode", "bridge")
    opts = runspec.RunOptions(
        entrypoint=conf.get("Entrypoint"), cmd=conf.get("Cmd"), env=env, user=conf.get("User"),
        workdir=conf.get("WorkingDir"), hostname=hostname, terminal=bool(conf.get("Tty")),
        resources=dict(host.get("Resources") or {}), read_only=bool(host.get("ReadonlyRootfs")),
        network=runspec.NETWORK_HOST if mode == "host" else runspec.NETWORK_PRIVATE)

    def ready(rootfs: str) -> list[dict[str, Any]]:
        """The container's own parts on the fresh rootfs; its /etc files and volumes."""
        from imagetool.run import etcfiles
        if os.path.isdir(recs.path(cid, "upper")):  # it ran before: its changes come back
            _restore_upper(store, rec, bpath, recs.path(cid, "upper"))
        if host.get("Volumes"):
            from imagetool.run import volumes
            volumes.copy_up(recs.root, host["Volumes"], rootfs)
        etc = etcfiles.write(recs.path(cid), hostname, mode, host.get("ExtraHosts"),
                             host.get("Dns"))
        return etc + _mounts(recs, host)
    try:
        _meta, spec = bundle.make(store, parts if parts is not None else rec["Image"], bpath,
                                  opts, mode="overlay", ready=ready)
        args = spec["process"]["args"]
        with recs.lock():
            r = recs.load(cid)
            r["Path"], r["Args"] = args[0], args[1:]
            recs.save(r)
    except BaseException:
        with contextlib.suppress(Exception):
            bundle.remove(bpath)
        raise


def keep_upper(recs: Records, cid: str) -> None:
    """After a run: keep the container's changes (the overlay's upper directory) as
    <container dir>/upper, so a later start (and diff, commit) has them, as docker keeps a
    stopped container's filesystem. The bundle itself is removed by the caller."""
    import shutil

    from imagetool import snapshots
    bpath = recs.path(cid, "bundle")
    upper = os.path.join(bpath, "overlay", "upper")
    if not os.path.isdir(upper):
        return
    snapshots.unmount(os.path.join(bpath, "rootfs"))
    kept = recs.path(cid, "upper")
    if os.path.isdir(kept):
        shutil.rmtree(kept)
    os.rename(upper, kept)


def _restore_upper(store: Any, rec: dict[str, Any], bpath: str, kept: str) -> None:
    """Mount the fresh bundle's overlay again over the kept upper directory."""
    import shutil

    from imagetool import bundle, snapshots
    rootfs, ov = os.path.join(bpath, "rootfs"), os.path.join(bpath, "overlay")
    if not os.path.isdir(os.path.join(ov, "upper")):
        return  # an image without layers: nothing was mounted, nothing to bring back
    snapshots.unmount(rootfs)
    for d in ("upper", "work"):
        shutil.rmtree(os.path.join(ov, d))
    os.mkdir(os.path.join(ov, "work"), 0o700)
    os.rename(kept, os.path.join(ov, "upper"))
    chain = bundle.image_parts(store, rec["Image"])["chain"]
    lowers = snapshots.Snapshots(store.root).ensure(store, chain)
    snapshots.mount_overlay(lowers, os.path.join(ov, "upper"), os.path.join(ov, "work"),
                            rootfs)


def _mounts(recs: Records, host: dict[str, Any]) -> list[dict[str, Any]]:
    """The OCI mounts of -v/--mount/--tmpfs, named volumes made on the way."""
    out = list(host.get("OciMounts") or [])
    if host.get("Volumes"):
        from imagetool.run import volumes
        out += volumes.oci_mounts(recs.root, host["Volumes"])
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
