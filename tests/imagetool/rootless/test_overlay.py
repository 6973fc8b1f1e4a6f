"""Rootless snapshots: whiteouts and opaque directories of a multi-layer image work in a
user namespace (user.overlay.opaque, overlayfs mounted with `userxattr`)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile

from tests.imagetool.images import busybox_layout, skopeo_copy
from tests.imagetool.rootless.test_run import _leftovers


def _tar(path: str, entries: list[tuple[str, bytes | None]]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return path


def test_whiteouts_and_opaque_dirs_rootless(subuser, registry):
    reg = registry("plain")
    work = tempfile.mkdtemp(prefix="itool-rl-ovl-")
    try:
        layout = busybox_layout(os.path.join(work, "layout"), work)
        a = _tar(os.path.join(work, "a.tar"), [("data", None), ("data/a", b"a"),
                                               ("data/b", b"b"), ("gone", b"x")])
        b = _tar(os.path.join(work, "b.tar"), [("data", None), ("data/.wh..wh..opq", b""),
                                               ("data/c", b"c"), (".wh.gone", b"")])
        for t in (a, b):
            subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:latest", t],
                           check=True, capture_output=True, timeout=60)
        skopeo_copy(f"oci:{layout}:latest", f"docker://{reg.ref('rl/layers:1')}",
                    "--dest-tls-verify=false")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    u = subuser
    r = u.imagetool("pull", "-q", reg.ref("rl/layers:1"))
    assert r.returncode == 0, r.stderr
    r = u.imagetool("run", "--rm", "--network", "none", reg.ref("rl/layers:1"), "sh", "-c",
                    "ls /data; test -e /gone && echo gone-still-there; rm -r /data; "
                    "mkdir /data; ls /data | wc -l")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["c", "0"]
    assert _leftovers(u) == []
