"""`cp` between a container and the host, both ways, docker's rules: into an existing
directory the source keeps its name, else it takes the destination's; SRC/. copies a
directory's content; `-` is a tar stream on stdin/stdout. The container's files are
reached through /proc/<init pid>/root (its own mount namespace: volumes and tmpfs
included), every path resolved inside that root, symlinks too, so nothing outside it is
ever read or written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from imagetool.run.records import ContainerError, Records, status
from runtime.linux.inroot import InRoot, TooManyLinks

_MAX_LINKS = 40


def resolve_in(root: str, path: str, follow_last: bool = False) -> str:
    """The host path of container path `path` under `root`, symlinks resolved as if `root`
    were / (the shared resolver's clamp mode, runtime/linux/inroot.py); the last component
    is followed only with follow_last; a component that can't be lstat'ed is kept as a name."""
    r = InRoot(root, max_links=_MAX_LINKS, tolerate=(OSError, ValueError))
    try:
        return r.host(r.walk(path.split("/"), follow_last=follow_last))
    except TooManyLinks:
        raise ContainerError(f"{path}: too many levels of symbolic links") from None


@contextlib.contextmanager
def container_root(recs: Records, cid: str) -> Iterator[str]:
    """Where the container's / is seen from the host: a running one's /proc/PID/root, a
    created one's mounted rootfs, an exited one's kept changes over its image (an overlay
    mounted for the copy, unmounted after)."""
    rec = recs.load(cid)
    pid = int((rec.get("State") or {}).get("Pid") or 0)
    if status(rec) in ("running", "paused") and pid > 0 and os.path.isdir(f"/proc/{pid}/root"):
        yield f"/proc/{pid}/root"
        return
    rootfs = recs.path(cid, "bundle", "rootfs")
    if os.path.ismount(rootfs):
        yield rootfs
        return
    from imagetool.run import fsops
    with fsops.merged_view(recs, cid) as root:
        yield root


def _copy(src: str, dest: str) -> None:
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        shutil.copystat(src, dest)
    else:
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise ContainerError(f"cannot overwrite directory {dest} with a file")
        if os.path.lexists(dest):
            os.unlink(dest)
        shutil.copy2(src, dest, follow_symlinks=False)


def _target(src: str, dest: str, content_only: bool) -> str:
    """docker's rule: into an existing directory keep the source's name (unless SRC/.)."""
    if os.path.isdir(dest) and not os.path.islink(dest) and not content_only:
        return os.path.join(dest, os.path.basename(src.rstrip("/")) or ".")
    return dest


def copy_out(recs: Records, cid: str, cpath: str, dest: str | BinaryIO) -> None:
    with container_root(recs, cid) as root:
        _copy_out(root, cid, cpath, dest)


def _copy_out(root: str, cid: str, cpath: str, dest: str | BinaryIO) -> None:
    src = resolve_in(root, cpath, follow_last=cpath.endswith("/") or cpath.endswith("/."))
    if not os.path.lexists(src):
        raise ContainerError(f"could not find the file {cpath} in container {cid[:12]}")
    if not isinstance(dest, str):
        with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            tf.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")
        return
    content_only = cpath.endswith("/.")
    if content_only and not os.path.isdir(src):
        raise ContainerError(f"{cpath}: not a directory")
    parent = os.path.dirname(os.path.abspath(dest)) or "/"
    if not os.path.isdir(parent):
        raise ContainerError(f"{dest}: directory {parent} does not exist")
    _copy(src, _target(src, dest, content_only))


def copy_in(recs: Records, cid: str, src: str | BinaryIO, cpath: str) -> None:
    with container_root(recs, cid) as root:
        _copy_in(root, src, cpath)


def _copy_in(root: str, src: str | BinaryIO, cpath: str) -> None:
    dest = resolve_in(root, cpath, follow_last=True)
    if not isinstance(src, str):
        if not os.path.isdir(dest):
            raise ContainerError(f"{cpath}: not a directory in the container (a tar on stdin "
                                 "is extracted into a directory)")
        with tarfile.open(fileobj=src, mode="r|*") as tf:
            for member in tf:
                name = os.path.normpath(member.name).lstrip("/")
                if name.startswith("..") or os.path.isabs(name):
                    raise ContainerError(f"tar entry {member.name} leaves the directory")
                if member.islnk() or member.isdev():
                    continue  # hard links and device nodes are not copied in
                parent = os.path.dirname(name)
                # a symlink among the parents (one the archive just made, say) would take
                # the write outside the container: refuse
                if parent and resolve_in(root, os.path.join(cpath, parent), follow_last=True) \
                        != os.path.normpath(os.path.join(dest, parent)):
                    raise ContainerError(f"tar entry {member.name}: a parent is a symlink")
                member.name = name
                tf.extract(member, dest, set_attrs=True)
        return
    if not os.path.lexists(src):
        raise ContainerError(f"{src}: no such file or directory")
    content_only = src.endswith("/.")
    parent = os.path.dirname(dest.rstrip("/")) or root
    if not os.path.isdir(parent):
        raise ContainerError(f"{cpath}: its directory does not exist in the container")
    _copy(src, _target(src, dest, content_only))
