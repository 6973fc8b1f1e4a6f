"""What every part of the layer package shares: its errors and the whiteout names.

The OCI image spec's whiteouts: `.wh.<name>` deletes <name> from lower layers and
`.wh..wh..opq` in a directory hides everything lower layers put there; overlayfs' own format
(a 0:0 character device, the trusted.overlay.opaque xattr) is what the applier writes in
overlay mode and what the generator reads from an upper directory.
"""

from __future__ import annotations

from imagetool.errors import ImagetoolError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
WHITEOUT_META = ".wh..wh."  # aufs' own bookkeeping (.wh..wh.plnk, ...): skipped
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
DROPPED_XATTR_PREFIX = "trusted.overlay."


class LayerError(ImagetoolError):
    """A layer we cannot apply: not a tar, truncated, unsupported entry, failed digest."""


class UnsafeLayer(LayerError):
    """An entry that would land outside the rootfs (or write through a symlink out of it)."""
