"""A container's own filesystem (its overlay: BUNDLE/overlay/upper over the image's layer
snapshots): `diff` (A/C/D as docker prints them), `export` (a tar of the merged rootfs,
without the volumes and /etc files mounted over it), `commit` (the upper directory as a new
layer on the image: a new image). Only containers whose overlay exists (running, paused or
created) have one: an exited container's overlay is gone with its run."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from typing import IO, Any

from imagetool.run.records import ContainerError, Records

_MOUNTED_FILES = {"etc/hostname", "etc/hosts", "etc/resolv.conf"}


def _paths(recs: Records, cid: str, merged: bool = True) -> tuple[str, str, list[str]]:
    """(merged rootfs, upper dir, lower snapshot dirs) of the container; without `merged`,
    an exited container's kept upper dir will do (rootfs is then '')."""
    bpath = recs.path(cid, "bundle")
    rootfs, upper = os.path.join(bpath, "rootfs"), os.path.join(bpath, "overlay", "upper")
    if not merged and not os.path.ismount(rootfs) and os.path.isdir(recs.path(cid, "upper")):
        from imagetool import bundle, snapshots
        from imagetool.store import Store
        store = Store(recs.root)
        chain = bundle.image_parts(store, recs.load(cid)["Image"])["chain"]
        snaps = snapshots.Snapshots(recs.root)
        return "", recs.path(cid, "upper"), [snaps.path(d["digest"]) for d, _ in chain]
    if not os.path.ismount(rootfs) or not os.path.isdir(upper):
        raise ContainerError(f"container {cid[:12]} has no filesystem now (an exited "
                             "container's overlay is removed; start it or use a running one)")
    from imagetool import snapshots
    try:
        with open(os.path.join(bpath, "imagetool.json")) as f:
            layers = json.load(f).get("layers") or []
    except (OSError, ValueError):
        layers = []
    snaps = snapshots.Snapshots(recs.root)
    return rootfs, upper, [snaps.path(d) for d in layers]


@contextlib.contextmanager
def merged_view(recs: Records, cid: str) -> Iterator[str]:
    """An exited container's filesystem: its kept changes over its image's layers, mounted
    (read-write: cp into it changes what the next start sees) for the `with` only."""
    from imagetool import snapshots
    _rootfs, upper, lowers = _paths(recs, cid, merged=False)
    if not lowers:
        raise ContainerError(f"container {cid[:12]}: its image has no layers")
    target, work = recs.path(cid, "view"), recs.path(cid, "view-work")
    for d in (target, work):
        os.makedirs(d, mode=0o700, exist_ok=True)
    if not all(os.path.isdir(lo) for lo in lowers):
        raise ContainerError(f"container {cid[:12]}: its image's layer snapshots are gone "
                             "(start it once to make them again)")
    snapshots.mount_overlay(lowers, upper, work, target)
    try:
        yield target
    finally:
        snapshots.unmount(target)
        import shutil
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(target)


def _skip(rel: str, st: os.stat_result) -> bool:
    """The mount points run made for /etc/hostname, hosts, resolv.conf (empty files)."""
    return rel in _MOUNTED_FILES and stat.S_ISREG(st.st_mode) and st.st_size == 0


def diff(recs: Records, cid: str) -> list[str]:
    """docker diff's lines: 'A /new', 'C /changed', 'D /deleted', sorted by path."""
    from imagetool.layer.generate import changes
    _rootfs, upper, lowers = _paths(recs, cid, merged=False)
    out = []
    rels = changes(upper)
    skipped = {r for r in rels if _skip(r, os.lstat(os.path.join(upper, r)))}
    for rel in rels:
        st = os.lstat(os.path.join(upper, rel))
        if rel in skipped:
            continue
        if stat.S_ISDIR(st.st_mode) and any(r in skipped for r in rels
                                            if r.startswith(rel + "/")) and \
                all(r in skipped for r in rels if r.startswith(rel + "/")):
            continue  # only holds the mount points of /etc/hostname, hosts, resolv.conf
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            out.append(f"D /{rel}")
        elif any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers):
            out.append(f"C /{rel}")
        else:
            out.append(f"A /{rel}")
    return sorted(out, key=lambda line: line[2:])


def export(recs: Records, cid: str, out: IO[bytes]) -> None:
    """A tar of the container's merged filesystem (the overlay as the host sees it)."""
    if not os.path.ismount(recs.path(cid, "bundle", "rootfs")):
        with merged_view(recs, cid) as root:
            _export(root, out)
        return
    rootfs, _upper, _lowers = _paths(recs, cid)
    _export(rootfs, out)


def _export(rootfs: str, out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirs, files in os.walk(rootfs):
            dirs.sort()
            rel_dir = os.path.relpath(dirpath, rootfs)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                if _skip(rel, st):
                    continue
                ti = tf.gettarinfo(path, arcname=rel)
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(path, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)


def commit(store: Any, recs: Records, cid: str, name: str | None, message: str = "",
           author: str = "") -> str:
    """A new image: the container's image plus its changes as one layer; named `name` or
    kept as <none>. Returns the image ID."""
    from imagetool import bundle, reference
    from imagetool import mediatypes as mt
    from imagetool.layer.generate import write_layer
    rec = recs.load(cid)
    _rootfs, upper, _lowers = _paths(recs, cid, merged=False)
    parts = bundle.image_parts(store, rec["Image"])
    manifest, config = dict(parts["manifest"]), json.loads(json.dumps(parts["config"]))
    with store.lease():
        desc, diff_id, _count = write_layer(store, upper)
        if manifest.get("mediaType") == mt.DOCKER_MANIFEST:
            desc["mediaType"] = mt.DOCKER_LAYER_GZIP
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        config["created"] = now
        if author:
            config["author"] = author
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = \
            list(config["rootfs"].get("diff_ids") or []) + [diff_id]
        step = {"created": now, "created_by": " ".join([rec.get("Path", ""),
                                                         *rec.get("Args", [])])}
        if message:
            step["comment"] = message
        if author:
            step["author"] = author
        config["history"] = list(config.get("history") or []) + [step]
        cdesc = store.put_json(config, manifest["config"]["mediaType"])
        manifest["config"] = cdesc
        manifest["layers"] = list(manifest.get("layers") or []) + [desc]
        manifest.pop("annotations", None)
        mdesc = store.put_json(manifest, manifest.get("mediaType") or mt.OCI_MANIFEST)
        if name:
            store.set_image(reference.normalize(name), mdesc)
        else:
            store.keep_unnamed(mdesc)
    return cdesc["digest"]
