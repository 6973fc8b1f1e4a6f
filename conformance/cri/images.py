"""The CRI suite's images, made with our own tools and served by a local registry:
the pause image (pause.c built static with gcc, one layer by `imagetool import`) and the app
image (examples/app on a busybox base, by `imagetool build`), both `imagetool push`ed to a
plain-HTTP docker-registry on 127.0.0.1 for containerd's CRI PullImage to fetch."""

from __future__ import annotations

import os
import subprocess
import tarfile

from conformance.engines.bundles import PYRUNC, make_rootfs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGETOOL = os.path.join(os.path.dirname(PYRUNC), "imagetool")
PAUSE_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pause.c")
APP_DIR = os.path.join(REPO, "examples", "app")


class ImageError(RuntimeError):
    """A build step failed; the message carries the command and its output."""


def _run(argv: list[str], timeout: float = 300) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise ImageError(f"$ {' '.join(argv)}\n-> rc={p.returncode}\n{p.stdout}{p.stderr}")


def _tar(rootfs: str, dest: str) -> str:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(rootfs, arcname=".")
    return dest


def build_pause(work: str) -> str:
    """pause.c -> a static binary at /pause in a rootfs tarball."""
    rootfs = os.path.join(work, "pause-rootfs")
    os.makedirs(rootfs)
    _run(["gcc", "-static", "-Os", "-Wall", "-o", os.path.join(rootfs, "pause"), PAUSE_C])
    return _tar(rootfs, os.path.join(work, "pause.tar"))


def build_and_push(work: str, registry_host: str) -> dict[str, str]:
    """Make both images in a private imagetool store under `work` and push them; returns
    {"pause": ref, "app": ref} as the registry serves them."""
    store = os.path.join(work, "store")
    it = [IMAGETOOL, "--root", store]
    busybox = _tar(make_rootfs(os.path.join(work, "busybox")), os.path.join(work, "bb.tar"))
    _run([*it, "import", busybox, "busybox:latest"])
    _run([*it, "import", "--entrypoint", '["/pause"]', build_pause(work), "cri-pause:1"])
    _run([*it, "build", "--network", "none", "-t", "cri-app:1", APP_DIR])
    refs = {"pause": f"{registry_host}/cri/pause:1", "app": f"{registry_host}/cri/app:1"}
    _run([*it, "push", "-q", "cri-pause:1", refs["pause"]])
    _run([*it, "push", "-q", "cri-app:1", refs["app"]])
    return refs
