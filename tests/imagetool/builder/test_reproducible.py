"""Reproducible builds beyond the clock: with SOURCE_DATE_EPOCH, a build whose steps make
directories of their own (WORKDIR, COPY into new parents, a COPY'd directory, ADD of a tar,
COPY --from) gives the same image whatever the umask of the process that runs the builder:
its directories are 0755 as BuildKit makes them (a 077 caller made them 0700 before)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from imagetool import bundle
from imagetool.builder.executor import Builder
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import builds, busybox_store, write_context

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DOCKERFILE = """FROM busybox AS one
RUN mkdir -p /out/x && echo hi > /out/x/h
FROM busybox
WORKDIR /work/new
COPY f.txt /a/b/f.txt
COPY d /copied/
ADD t.tar /added/
COPY --from=one /out /from-one
RUN touch /stamp
"""
MADE = ["work", "work/new", "a", "a/b", "copied", "copied/sub", "added", "added/pkg",
        "from-one"]


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("pkg/inside.txt")  # pkg/ itself is not in the tar: ADD makes it
        ti.size, ti.mtime = 3, 1_600_000_000
        tf.addfile(ti, io.BytesIO(b"in\n"))
    return buf.getvalue()


@pytest.fixture(scope="module")
def env():
    with busybox_store("itrepro-") as e:
        yield e


def _modes(store: Store, name: str) -> dict[str, int]:
    parts = bundle.image_parts(store, f"docker.io/library/{name}")
    out = {}
    for desc, _ in parts["chain"][1:]:
        with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
            out.update({m.name.rstrip("/"): m.mode for m in tf.getmembers() if m.isdir()})
    return out


def test_the_callers_umask_does_not_reach_the_layers(env):
    files = {"f.txt": "x\n", "d/a.txt": "a\n", "d/sub/b.txt": "b\n", "t.tar": _tar()}
    # the context is written with one umask for both builds: only the builder's differs
    old = os.umask(0o022)
    try:
        ctx = write_context(env["dir"], DOCKERFILE, files)
    finally:
        os.umask(old)
    digests = {}
    with builds(env) as build:
        for mask in (0o022, 0o077):
            old = os.umask(mask)
            try:
                b, store = build(DOCKERFILE, files, tag=f"umask:{mask:o}", ctx=ctx,
                                 build_args={"SOURCE_DATE_EPOCH": "1700000000"},
                                 no_cache=True)
            finally:
                now = os.umask(old)
            assert now == mask, "the builder left its own umask behind"
            assert isinstance(b, Builder) and b.containers == 2
            digests[mask] = b.result.manifest["digest"]
            modes = _modes(store, f"umask:{mask:o}")
            assert {d: oct(modes.get(d, 0)) for d in MADE} == {d: "0o755" for d in MADE}
    assert digests[0o022] == digests[0o077]
