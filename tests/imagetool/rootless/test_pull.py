"""Slice 3: `pull` and `push` as an ordinary user against a local registry, then `run`."""

from __future__ import annotations

import os
import shutil
import tempfile

from tests.imagetool.rootless.test_run import STAT, _leftovers, _owned_tar
from tests.imagetool.storehelp import imagetool


def test_pull_run_push_as_user(subuser, registry):
    reg = registry("plain")
    seed = tempfile.mkdtemp(prefix="itool-rl-seed-")
    try:  # root puts the image in the registry
        root = os.path.join(seed, "store")
        imagetool(root, "import", _owned_tar(subuser), "busybox:latest")
        imagetool(root, "push", "-q", "busybox:latest", reg.ref("rl/busybox:1"))
    finally:
        shutil.rmtree(seed, ignore_errors=True)
    u = subuser
    r = u.imagetool("pull", "-q", reg.ref("rl/busybox:1"))
    assert r.returncode == 0, r.stderr
    r = u.imagetool("run", "--rm", "--network", "none", reg.ref("rl/busybox:1"), "sh", "-c",
                    STAT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["/f1000 1000:1000", "/f65534 65534:65534",
                                        "/d1000 1000:1000", "0"]
    r = u.imagetool("push", "-q", reg.ref("rl/busybox:1"), reg.ref("rl/again:2"))
    assert r.returncode == 0, r.stderr
    r = u.imagetool("pull", "-q", reg.ref("rl/again:2"))
    assert r.returncode == 0, r.stderr
    assert _leftovers(u) == []
