"""The `prune` verb: the blobs and snapshots no image or container uses (and, with
--build-cache, the builder's step cache first). Its own module because `system prune` ends
with it too: imagetool/cli.py registers it, run/verbs_system.py calls it, and it imports
neither."""

from __future__ import annotations

import argparse
import sys


def cmd_prune(args: argparse.Namespace) -> int:
    """Print each thing deleted (unless --quiet) and the total reclaimed; 0."""
    import contextlib
    import json

    from imagetool import snapshots, views
    from imagetool.run.records import Records
    from imagetool.store import Store
    store = Store(args.root)
    total = 0
    if args.build_cache:  # first: the layers only the step cache kept go in the GC below
        from imagetool.builder.cache_prune import prune_build_cache
        for what, size in prune_build_cache(store):
            total += size
            if not args.quiet:
                print(f"Deleted build cache: {what}")
    report = store.gc_report(wait=False)
    if not report and store.busy():
        print("imagetool: prune: waiting for other writers (pull, import, load) to finish",
              file=sys.stderr)
        report = store.gc_report(wait=True)
    for digest, size in report:
        total += size
        if not args.quiet:
            print(f"Deleted: {digest}")
    recs = Records(store.root)
    in_use: set[str] = set()  # the layers of the bundles containers still have
    for cid in recs.ids():
        with contextlib.suppress(OSError, ValueError), \
                open(recs.path(cid, "bundle", "imagetool.json")) as f:
            in_use.update(json.load(f).get("layers") or [])
    for digest, size in snapshots.prune_store(store, in_use):
        total += size
        if not args.quiet:
            print(f"Deleted snapshot: {digest}")
    print(f"Total reclaimed space: {views.human_size(total)}")
    return 0
