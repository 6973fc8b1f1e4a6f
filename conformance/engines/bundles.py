"""Busybox material every suite and benchmark starts from, made without the internet: the
runtimes under test, a rootfs from busybox-static, the default bundle config, a rootfs
tarball, and a `docker load` archive of busybox:latest (umoci + skopeo).

tests/rig.py and tests/imagetool/storehelp.py re-export these names for the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from typing import Any

from conformance.engines.procs import run

BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin:/sbin:/usr/sbin") or "/bin/busybox"
BUSYBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYRUNC = os.path.join(os.path.dirname(sys.executable), "pyrunc")
RUNC = shutil.which("runc")
CRUN = shutil.which("crun")


def make_rootfs(dest: str) -> str:
    """A busybox rootfs from busybox-static: the binary, a symlink per applet, the usual dirs."""
    bindir = os.path.join(dest, "bin")
    os.makedirs(bindir, exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(bindir, "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for app in applets:
        if app != "busybox" and not os.path.lexists(os.path.join(bindir, app)):
            os.symlink("busybox", os.path.join(bindir, app))
    for d in ("proc", "sys", "dev", "etc", "tmp", "root", "home/user"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")
    return dest


def clone_rootfs(template: str, dest: str) -> str:
    """Copy a template rootfs cheaply: the busybox binary is hard-linked."""
    shutil.copytree(template, dest, symlinks=True, copy_function=os.link)
    return dest


def default_config(args: list[str]) -> dict[str, Any]:
    """pyrunc's `spec` config without a terminal, running `args`."""
    from runtime.spec import default_spec
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    return cfg


def rootfs_tar(directory: str) -> str:
    """A tar of a busybox rootfs (entries ./bin/busybox, ./bin/sh -> busybox, ...)."""
    root = make_rootfs(os.path.join(directory, "rootfs"))
    path = os.path.join(directory, "rootfs.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(root, arcname=".")
    return path


def build_busybox_archive(top: str, umoci: str, skopeo: str) -> str:
    """A `docker load` archive of busybox:latest under `top`: busybox-static rootfs -> one
    layer -> OCI layout (umoci) -> docker-archive (skopeo). RuntimeError naming the failed
    step."""
    rootfs = make_rootfs(os.path.join(top, "rootfs"))
    layer = os.path.join(top, "layer.tar")
    with tarfile.open(layer, "w") as t:
        t.add(rootfs, arcname=".")
    layout = os.path.join(top, "layout")
    archive = os.path.join(top, "busybox.tar")
    steps = [
        [umoci, "init", "--layout", layout],
        [umoci, "new", "--image", f"{layout}:latest"],
        [umoci, "raw", "add-layer", "--image", f"{layout}:latest", layer],
        [umoci, "config", "--image", f"{layout}:latest", "--config.cmd", "/bin/sh",
         "--config.env", f"PATH={BUSYBOX_PATH}", "--config.workingdir", "/"],
        [skopeo, "copy", "--quiet", f"oci:{layout}:latest",
         f"docker-archive:{archive}:busybox:latest"],
    ]
    for argv in steps:
        r = run(argv, timeout=120)
        if r.rc != 0:
            raise RuntimeError(f"building the busybox image failed:\n{r!r}")
    return archive
