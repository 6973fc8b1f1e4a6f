"""Fixtures: a busybox rootfs template (built once), a fresh bundle per test, and `pyrunc`
bound to a private state root. Teardown force-deletes every container the test made and
fails the test if a cgroup or state directory was left behind."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.rig import (
    PYRUNC,
    Bundle,
    Runtime,
    cgroup_leftovers,
    clone_rootfs,
    default_config,
    make_rootfs,
)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> str:
    return make_rootfs(str(tmp_path_factory.mktemp("template") / "rootfs"))


@pytest.fixture
def bundle(rootfs_template, tmp_path) -> Bundle:
    path = str(tmp_path / "bundle")
    os.makedirs(path)
    clone_rootfs(rootfs_template, os.path.join(path, "rootfs"))
    return Bundle(path, default_config(["true"])).write()


@pytest.fixture
def make_bundle(rootfs_template, tmp_path):
    """Factory for several bundles in one test."""
    count = [0]

    def make(args: list[str] | None = None) -> Bundle:
        count[0] += 1
        path = str(tmp_path / f"bundle{count[0]}")
        os.makedirs(path)
        clone_rootfs(rootfs_template, os.path.join(path, "rootfs"))
        return Bundle(path, default_config(args or ["true"])).write()
    return make


@pytest.fixture
def pyrunc():
    root = tempfile.mkdtemp(prefix="pyrunc-test-root-")
    rt = Runtime(PYRUNC, root)
    yield rt
    left = rt.cleanup()
    cg = [p for cid in rt.ids for p in cgroup_leftovers(cid)]
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"containers left behind: {left}"
    assert not cg, f"cgroups left behind: {cg}"
