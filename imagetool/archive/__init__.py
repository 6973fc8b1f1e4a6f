"""`imagetool save` and `load`: images to and from a tar archive, either an OCI archive (a tar
of an OCI image layout) or docker's `docker save` format. Loading detects the format (and
gzip/zstd/xz/bzip2 compression around it) and publishes every image of the archive in one
index update, or none of them."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, BinaryIO

from imagetool.archive.docker import load_docker, load_legacy, save_docker
from imagetool.archive.oci import load_oci, save_oci
from imagetool.archive.tarreader import ArchiveError, open_archive
from imagetool.archive.tarwriter import TarWriter
from imagetool.atomicfile import atomic_file
from imagetool.store import Store, StoreError

__all__ = ["ArchiveError", "FORMATS", "save", "save_to", "load"]

FORMATS = ("oci", "docker")


def _images(store: Store, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    if not names:
        raise ArchiveError("nothing to save: no image names given")
    out = []
    for name in dict.fromkeys(names):  # the same name twice is saved once
        desc = store.get_image(name)
        if desc is None:
            raise ArchiveError(f"no image named {name} in {store.root}")
        out.append((name, desc))
    return out


def save(store: Store, names: list[str], out: IO[bytes], fmt: str = "oci",
         spool_dir: str | None = None) -> None:
    """Write the images `names` (full store names) to the stream `out` as `fmt`."""
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown archive format {fmt!r} (want one of {', '.join(FORMATS)})")
    images = _images(store, names)
    tw = TarWriter(out)
    try:
        if fmt == "oci":
            save_oci(store, images, tw)
        else:
            save_docker(store, images, tw, spool_dir)
    except BaseException:  # Ctrl-C or an error: no tar trailer into a closed file later
        tw.abort()
        raise
    tw.close()


def save_to(store: Store, names: list[str], path: str, fmt: str = "oci") -> None:
    """save() into `path` through a temp file beside it: the archive appears whole or not."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ArchiveError(f"{path}: directory {directory} does not exist")
    _images(store, names)  # a missing name fails before any file is created
    with atomic_file(path) as f:
        save(store, names, f, fmt, spool_dir=directory)


def load(store: Store, source: str | BinaryIO, label: str | None = None) -> list[str]:
    """Load every image of the archive at `source` (a path or a binary stream); return the
    names now in the store. On failure nothing is named and the blobs already copied are
    collected again (unless another writer is busy; then `prune` gets them later)."""
    label = label or (source if isinstance(source, str) else getattr(source, "name", "stdin"))
    with store.lock():  # make sure the layout (and its ingest dir for spooling) exists
        pass
    try:
        with store.lease():
            with open_archive(source, str(label), store.ingest_dir) as tr:
                if tr.has("oci-layout") and tr.has("index.json"):
                    pairs = load_oci(store, tr)
                elif tr.has("manifest.json"):
                    pairs = load_docker(store, tr)
                elif tr.has("repositories"):
                    pairs = load_legacy(store, tr)
                else:
                    raise ArchiveError(f"{label}: neither an OCI archive (oci-layout, "
                                       "index.json) nor a docker save archive (manifest.json)")
            store.set_images(pairs)
    except BaseException:
        with contextlib.suppress(StoreError, OSError):
            store.gc(wait=False)
        raise
    seen: dict[str, None] = {}
    for name, _ in pairs:
        seen.setdefault(name)
    return list(seen)
