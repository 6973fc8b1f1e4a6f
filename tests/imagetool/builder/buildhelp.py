"""What the builder's test modules share: a private store holding a busybox base image made
with `imagetool import`, build contexts written from a dict of files, and a `build` runner
that checks afterwards that no build left a mount, temp dir or runtime container behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from conformance.engines.build_cases import fill_context
from imagetool.builder.executor import Builder, BuildOptions
from imagetool.store import Store
from tests.imagetool.storehelp import imagetool, rootfs_tar, unmount_under


@contextlib.contextmanager
def busybox_store(prefix: str) -> Iterator[dict[str, str]]:
    """{"dir": a temp dir, "root": a store in it with busybox:latest}; all of it (mounts
    included) is gone afterwards."""
    d = tempfile.mkdtemp(prefix=prefix)
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        yield {"dir": d, "root": root}
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def write_context(parent: str, dockerfile: str,
                  files: dict[str, str | bytes] | None = None) -> str:
    """A new context directory under `parent` with the Dockerfile and `files` in it."""
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=parent)
    fill_context(ctx, dockerfile, files)
    return ctx


def assert_nothing_left(root: str) -> None:
    with open("/proc/self/mounts") as f:
        assert not [line for line in f if root in line], "a build left a mount behind"
    for d in ("build-tmp", "build-runtime"):
        p = os.path.join(root, d)
        assert not os.path.isdir(p) or os.listdir(p) == [], f"{d} not cleaned up"


@contextlib.contextmanager
def builds(env: dict[str, str], tag: str = "test:latest"
           ) -> Iterator[Callable[..., tuple[Builder, Store]]]:
    """run(dockerfile, files, tag=..., ctx=..., **BuildOptions) -> (builder, store), with the
    build's result as builder.result; checks that nothing is left behind at the end."""
    made: list[str] = []

    def run(dockerfile: str, files: dict[str, str | bytes] | None = None, *,
            tag: str = tag, ctx: str | None = None, **kw: Any) -> tuple[Builder, Store]:
        if ctx is None:
            ctx = write_context(env["dir"], dockerfile, files)
            made.append(ctx)
        else:
            fill_context(ctx, dockerfile, files)
        store = Store(env["root"])
        b = Builder(store, BuildOptions(context=ctx, tags=[tag], **kw), out=lambda s: None)
        b.result = b.build()  # type: ignore[attr-defined]
        return b, store

    try:
        yield run
        assert_nothing_left(env["root"])
    finally:
        for ctx in made:
            shutil.rmtree(ctx, ignore_errors=True)
