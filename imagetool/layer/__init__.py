"""Layers: apply layer tarballs to a directory and make them from an overlayfs upper directory.

One package, as umoci keeps tar_extract, tar_generate and unpack together: base (errors,
whiteout names), stream (decompress + digest), tarheader (the tar header reader), resolve (the
in-root path resolver), apply (the applier: our own member loop, never tarfile's extractall),
generate (upper directory -> layer blob).

Two targets:
  copy     a full rootfs: layers applied in order onto one tree; `.wh.X` removes X and
           `.wh..wh..opq` empties its directory of what lower layers put there (what this
           layer adds stays), like `umoci unpack` and docker's applyLayer.
  overlay  one layer into an empty directory that becomes an overlayfs lower layer: `.wh.X`
           becomes a 0/0 character device X and `.wh..wh..opq` the trusted.overlay.opaque
           xattr (the kernel's own whiteout format).

Safety. Every name is checked before anything is written: absolute names and `..` components
are refused. Parents are resolved one component at a time with lstat, inside the root, the way
a chrooted process would see them: an absolute symlink restarts at the root, a relative one
continues from its directory, and a `..` that would climb above the root is refused (a peer
that clamps it, like a chroot, would keep the write inside; we refuse a layer that tries).
The last component is never followed: an existing symlink there is replaced, not written
through. Hardlinks resolve their target the same way and must name an existing non-directory
inside the root. We are the only writer of the tree while a layer is applied (a fresh
snapshot directory or a bundle we just made), so an lstat walk is race-free here. Callers
apply into a directory they remove on any error, so a refused layer leaves nothing behind.

Metadata: owner (numeric uid/gid, only when running as root), mode including setuid/setgid/
sticky (set after chown, which clears them), xattrs (PAX SCHILY.xattr.* and LIBARCHIVE.xattr.*;
trusted.overlay.* from a layer is dropped: it would steer overlayfs; ENOTSUP is ignored),
mtimes with nanoseconds (directories after their contents, at the end of the layer; parents
whose entries a whiteout removed get their old times back). Hardlinks share their target's
metadata and do not change it.

Speed: the blob is read, digest-checked, decompressed (isal gzip, zstd, or none) and diff_id
hashed by a producer thread (these release the GIL), while the main thread parses headers and
writes files; file data goes from the decompressor's chunk to os.write without a copy.
"""

from __future__ import annotations

from .apply import Applier, Stats, apply_file
from .base import (
    DROPPED_XATTR_PREFIX,
    OPAQUE,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT,
    WHITEOUT_META,
    LayerError,
    UnsafeLayer,
)
from .resolve import MAX_LINKS, Resolver, read_file_in, split_name
from .tarheader import BLOCK, Entry, entries, parse_header

# generate (which needs tarfile) is not imported here: `imagetool.layer.generate`.
__all__ = [
    "BLOCK", "DROPPED_XATTR_PREFIX", "MAX_LINKS", "OPAQUE", "OVERLAY_OPAQUE_XATTR", "WHITEOUT",
    "WHITEOUT_META", "Applier", "Entry", "LayerError", "Resolver", "Stats", "UnsafeLayer",
    "apply_file", "entries", "parse_header", "read_file_in", "split_name",
]
