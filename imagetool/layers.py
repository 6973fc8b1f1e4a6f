"""The old home of the layer code, kept so `from imagetool import layers` keeps working.

Everything lives in the `imagetool.layer` package now (stream, tarheader, resolve, apply,
generate); this module only re-exports its names.
"""

from __future__ import annotations

from imagetool.layer import (
    BLOCK,
    DROPPED_XATTR_PREFIX,
    MAX_LINKS,
    OPAQUE,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT,
    WHITEOUT_META,
    Applier,
    Entry,
    LayerError,
    Resolver,
    Stats,
    UnsafeLayer,
    apply_file,
    entries,
    parse_header,
    read_file_in,
    split_name,
)

__all__ = [
    "BLOCK", "DROPPED_XATTR_PREFIX", "MAX_LINKS", "OPAQUE", "OVERLAY_OPAQUE_XATTR", "WHITEOUT",
    "WHITEOUT_META", "Applier", "Entry", "LayerError", "Resolver", "Stats", "UnsafeLayer",
    "apply_file", "entries", "parse_header", "read_file_in", "split_name",
]
