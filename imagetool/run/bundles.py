"""A recorded container's bundle: `make_bundle()` (re)makes it from the record (overlay
rootfs, config.json, /etc files, volumes; the container's kept changes mounted back), and
`keep_upper()` keeps those changes when a run ends. Below lifecycle (create/start/remove),
the monitor and restart, which all use it; it imports none of them."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from imagetool.run.records import Records


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
