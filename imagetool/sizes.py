"""Image sizes as docker shows them: the bytes of the files the layers unpack to (regular
files' contents, not the tar headers nor the compressed blobs). A layer is read once; the
answer is kept in <store root>/cache/layer-sizes.json (digest -> bytes), written atomically,
so `images` stays quick. A layer blob that is missing or unreadable counts its compressed
size."""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from typing import Any

from imagetool.atomicfile import atomic_file

CACHE = os.path.join("cache", "layer-sizes.json")


def _load(path: str) -> dict[str, int]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) \
        else {}


def layer_content_size(store: Any, desc: dict[str, Any]) -> int:
    """Sum of the regular files' sizes in the layer blob `desc` (uncompressed)."""
    from imagetool import compression
    total = 0
    with open(store.blob_path(desc["digest"]), "rb") as raw:
        _kind, stream = compression.open_any(raw)
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                if member.isreg():
                    total += member.size
    return total


def image_size(store: Any, manifest: dict[str, Any]) -> int:
    """The uncompressed content size of the manifest's layers (docker's SIZE)."""
    path = os.path.join(store.root, CACHE)
    cache = _load(path)
    total, changed = 0, False
    for layer in manifest.get("layers") or []:
        d = layer.get("digest", "")
        if d not in cache:
            try:
                cache[d] = layer_content_size(store, layer)
                changed = True
            except (OSError, tarfile.TarError, ValueError, EOFError):
                total += int(layer.get("size", 0))
                continue
        total += cache[d]
    if changed:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_file(path, text=True, durable=False) as f:
                json.dump(cache, f)
    return total
