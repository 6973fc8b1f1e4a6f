"""Image -> runtime bundle: BUNDLE/rootfs and BUNDLE/config.json (convert.py), plus
BUNDLE/imagetool.json recording what was unpacked and how.

Two modes:
  copy     (`imagetool unpack`'s default, like `umoci unpack`) the layers are applied in
           order into BUNDLE/rootfs; the bundle stands alone and can be moved or tarred.
  overlay  (what `imagetool run` uses) every layer is extracted once into the store's
           snapshots (snapshots.py) and BUNDLE/rootfs is an overlay mount of them with
           BUNDLE/overlay/upper and BUNDLE/overlay/work: a second container of the same image
           copies nothing. remove() unmounts and deletes such a bundle.

Volumes: each path in the image's Volumes becomes a bind mount from BUNDLE/volumes/<n>,
filled with what the image has at that path (docker's anonymous volumes, copy-up included),
so the data lives outside the rootfs (and outside the overlay's upper) for as long as the
bundle does. Nothing is shared between bundles. (Not tmpfs: a volume's data should survive
the container process, as docker's do. Options rbind + rprivate, as docker gives them.)

BUNDLE must not exist or be an empty directory. On any failure (a refused layer entry, a
digest that does not match, an unknown user, ...) everything made is removed again: an
overlay is unmounted, and BUNDLE is deleted (or emptied, if it was there before)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO, cast

from imagetool import convert, layers, runspec, snapshots
from imagetool.atomicfile import atomic_file
from imagetool.errors import ImagetoolError
from imagetool.store import Store, StoreError
from imagetool.store.lookup import image_parts  # noqa: F401  (its old home: this API)

MODES = ("copy", "overlay")
METADATA = "imagetool.json"


class BundleError(ImagetoolError):
    """The bundle cannot be made; nothing was left behind."""


# -- the image ---------------------------------------------------------------------------------
# -- helpers -----------------------------------------------------------------------------------
def _hostname(bundle: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", os.path.basename(os.path.abspath(bundle)).lower())
    return base.strip("-")[:63] or "container"


def _atomic_json(path: str, obj: Any, mode: int = 0o644) -> None:
    with atomic_file(path, mode, text=True, durable=False) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _copy_tree(src: str, dst: str) -> None:
    """Copy a directory's contents with owners, modes, xattr-less, symlinks as symlinks."""
    for entry in os.scandir(src):
        s, d = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(d, 0o700)
            _copy_tree(s, d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            with open(s, "rb") as fi, open(d, "xb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
        else:
            os.mknod(d, st.st_mode, st.st_rdev)
        _copy_meta(d, st)


def _copy_meta(path: str, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _volumes(config: dict[str, Any], rootfs: str, bundle: str) -> list[dict[str, Any]]:
    vols = sorted((config.get("config") or {}).get("Volumes") or {})
    mounts = []
    for i, dest in enumerate(vols):
        if not isinstance(dest, str) or not dest.strip():
            continue
        parts = layers.split_name(dest.lstrip("/"), "image config", "volume")
        if not parts:
            raise BundleError(f"volume {dest!r}: cannot mount a volume over /")
        dest = "/" + "/".join(parts)
        src = os.path.join(bundle, "volumes", f"{i}-{'-'.join(parts)}"[:200])
        os.makedirs(os.path.dirname(src), mode=0o700, exist_ok=True)
        os.mkdir(src, 0o755)
        res = layers.Resolver(rootfs, "rootfs")
        try:
            host = res.follow(dest, f"volume {dest}")
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except layers.LayerError as e:
            if isinstance(e, layers.UnsafeLayer):
                raise
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            _copy_tree(host, src)
            _copy_meta(src, st)
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate"]})
    return mounts


def _make_workdir(rootfs: str, cwd: str) -> None:
    parts = layers.split_name(cwd.lstrip("/"), "image config", "working directory")
    layers.Resolver(rootfs, "rootfs").directory(parts, True, f"working directory {cwd}")


# -- bundles -----------------------------------------------------------------------------------
def unpack(store: Store, name: str, bundle: str, *, mode: str = "copy",
           entrypoint: list[str] | None = None, cmd: list[str] | None = None,
           env: list[str] | None = None, user: str | None = None, workdir: str | None = None,
           hostname: str | None = None, seccomp: bool = True,
           terminal: bool = False, default_cmd: list[str] | None = None) -> dict[str, Any]:
    """Make the runtime bundle `bundle` from the stored image `name`. Returns the metadata
    written to BUNDLE/imagetool.json. Without any command (no Entrypoint or Cmd in the image,
    none given) the process runs `default_cmd` (umoci's is ["sh"]), and the metadata says so
    as "defaultCmd"; with no `default_cmd`, that is a BundleError. Raises BundleError (or
    LayerError/UnsafeLayer for a refused layer) with nothing left behind."""
    opts = runspec.RunOptions(entrypoint=entrypoint, cmd=cmd, env=env, user=user,
                              workdir=workdir, hostname=hostname, seccomp=seccomp,
                              terminal=terminal, rootless=False)
    return make(store, name, bundle, opts, mode=mode, default_cmd=default_cmd)[0]


Ready = Callable[[str], list[dict[str, Any]]]


def make(store: Store, image: str | dict[str, Any], bundle: str,
         options: runspec.RunOptions, *, mode: str = "copy",
         default_cmd: list[str] | None = None, ready: Ready | None = None
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """unpack() with every run option: `image` is a store name or image_parts() already
    read; `ready(rootfs)`, when given, runs once the rootfs is in place and returns mounts
    to add after options.mounts. The spec (runspec.build) is written once, after all that.
    Returns (metadata, spec); on failure nothing is left, as unpack()."""
    if mode not in MODES:
        raise BundleError(f"unknown unpack mode {mode!r} (want one of {', '.join(MODES)})")
    bundle = os.path.abspath(bundle)
    existed = os.path.isdir(bundle)
    if existed:
        if os.listdir(bundle):
            raise BundleError(f"bundle {bundle} exists and is not empty")
    elif os.path.lexists(bundle):
        raise BundleError(f"bundle {bundle} exists and is not a directory")
    elif not os.path.isdir(os.path.dirname(bundle)):
        raise BundleError(f"cannot create bundle {bundle}: {os.path.dirname(bundle)} does "
                          "not exist")
    rootfs = os.path.join(bundle, "rootfs")
    mounted = defaulted = False
    cmd = options.cmd
    try:
        with store.lease():
            parts = image_parts(store, image) if isinstance(image, str) else image
            # no command is known from the config alone: say so before unpacking anything
            try:
                convert.command(parts["config"].get("config") or {}, options.entrypoint, cmd)
            except convert.ConvertError:
                if not default_cmd:
                    raise
                cmd = list(default_cmd)
                defaulted = True
            if not existed:
                os.mkdir(bundle, 0o700)
            os.mkdir(rootfs, 0o755)
            chain = parts["chain"]
            if mode == "copy":
                ap = layers.Applier(rootfs)
                for desc, diff_id in chain:
                    with store.open_blob(desc["digest"], desc.get("size")) as raw:
                        # a VerifiedReader is a read()-only BinaryIO as far as apply goes
                        ap.apply(cast(BinaryIO, raw), f"layer {desc['digest']}", diff_id)
            else:
                snaps = snapshots.Snapshots(store.root)
                lowers = snaps.ensure(store, chain) if chain else []
                if lowers:
                    ov = os.path.join(bundle, "overlay")
                    os.mkdir(ov, 0o700)
                    os.mkdir(os.path.join(ov, "upper"), 0o755)
                    os.mkdir(os.path.join(ov, "work"), 0o700)
                    snapshots.mount_overlay(lowers, os.path.join(ov, "upper"),
                                            os.path.join(ov, "work"), rootfs)
                    mounted = True
        image_conf = parts["config"]
        vols = _volumes(image_conf, rootfs, bundle)
        extra = ready(rootfs) if ready is not None else []
        opts = replace(options, cmd=cmd, hostname=options.hostname or _hostname(bundle),
                       mounts=[*options.mounts, *extra])
        spec = runspec.build(image_conf, opts, rootfs, vols)
        _make_workdir(rootfs, spec["process"]["cwd"])
        meta = {"image": parts["name"], "manifest": parts["manifest_desc"]["digest"],
                "config": parts["config_desc"]["digest"], "mode": mode,
                "layers": [d["digest"] for d, _ in chain]}
        if defaulted:
            meta["defaultCmd"] = cmd
        runspec.write(bundle, spec)
        _atomic_json(os.path.join(bundle, METADATA), meta)
        return meta, spec
    except BaseException as e:
        if mounted:
            with contextlib.suppress(OSError):
                snapshots.unmount(rootfs)
        _discard(bundle, existed)
        if isinstance(e, (convert.ConvertError, StoreError)):
            raise BundleError(str(e)) from None
        raise


def _discard(bundle: str, keep_dir: bool) -> None:
    if not os.path.isdir(bundle):
        return
    if snapshots.is_mountpoint(os.path.join(bundle, "rootfs")):
        return  # never delete through a mount we could not undo
    if keep_dir:
        for name in os.listdir(bundle):
            p = os.path.join(bundle, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
    else:
        shutil.rmtree(bundle, ignore_errors=True)


def remove(bundle: str) -> None:
    """Delete a bundle made by unpack(): unmount its overlay rootfs first, if any."""
    bundle = os.path.abspath(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.isdir(rootfs):
        snapshots.unmount(rootfs)
    shutil.rmtree(bundle, ignore_errors=True)
    if os.path.exists(bundle):
        raise BundleError(f"could not remove {bundle} completely")
