"""`imagetool prune --build-cache`: the builder's step cache and its RUN --mount=type=cache
directories removed, as `docker builder prune -a` does.

It runs under the store's GC lock taken exclusively: every build holds that lock shared for
its whole run (Store.lease), so no build can be reading a cache record or using a cache
mount while they go. Cached layers themselves are blobs: the normal prune collects those
that no image uses once their records are gone.
"""

from __future__ import annotations

import os
import shutil

from imagetool.store import Store
from imagetool.store.locks import flock_for

from .run_mounts import CACHE_MOUNTS

STEP_CACHE = "build-cache"


def _size(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_blocks * 512
    return total


def prune_build_cache(store: Store, wait: bool = True) -> list[tuple[str, int]]:
    """Remove every step-cache record and cache mount; (what, bytes freed) for each."""
    removed: list[tuple[str, int]] = []
    if not os.path.isdir(store.root):
        return removed
    with flock_for(os.path.join(store.root, ".gc.lock")).exclusive(blocking=wait):
        steps = os.path.join(store.root, STEP_CACHE)
        if os.path.isdir(steps):
            for name in sorted(os.listdir(steps)):
                path = os.path.join(steps, name)
                size = os.lstat(path).st_blocks * 512
                os.unlink(path)
                removed.append((f"step {name.removesuffix('.json')}", size))
        mounts = os.path.join(store.root, CACHE_MOUNTS)
        if os.path.isdir(mounts):
            for name in sorted(os.listdir(mounts)):
                path = os.path.join(mounts, name)
                try:
                    with open(os.path.join(path, "id")) as f:
                        label = f.read().strip() or name
                except OSError:
                    label = name
                size = _size(path)
                shutil.rmtree(path)
                removed.append((f"cache mount {label}", size))
    return removed
