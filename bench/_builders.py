"""The three builders' private stores and their build commands, for build_bench.py and
build_matrix_bench.py: imagetool with its own --root, buildah with its own --root/--runroot
(RUN through runc), and our own dockerd (bench/_engines.py's Dockerd)."""

from __future__ import annotations

import os
import re
import shutil

from bench._common import REPO, CommandFailed
from bench._engines import DOCKER, Dockerd
from conformance.engines.procs import run, which

TAG = "app:latest"


class Builders:
    """The three tools' private stores and their build commands."""

    def __init__(self, top: str, imagetool: str) -> None:
        self.top = top
        self.imagetool = imagetool
        self.ctx = os.path.join(top, "ctx")
        self.it_root = os.path.join(top, "it")
        self.bh_root = os.path.join(top, "bh", "root")
        self.bh_run = os.path.join(top, "bh", "run")
        self.buildah = which("buildah")
        self.runc = which("runc")
        self.dk = Dockerd(os.path.join(top, "d"), os.path.basename(top).replace("_", ""), [], {})
        self.dk_env = dict(self.dk.env, DOCKER_BUILDKIT="0")
        self.iid = os.path.join(top, "bh", "iid")

    def bh(self, *args: str) -> list[str]:
        return [self.buildah, "--root", self.bh_root, "--runroot", self.bh_run,
                "--storage-driver", "overlay", *args]

    def argv(self, tool: str, kind: str) -> tuple[list[str], dict[str, str] | None]:
        nc = ["--no-cache"] if kind == "cold" else []
        if tool == "imagetool":
            return [self.imagetool, "--root", self.it_root, "build", *nc, "-t", TAG,
                    self.ctx], None
        if tool == "buildah":
            return self.bh("bud", "--layers", *nc, "--pull=never", "--network", "host",
                           "--runtime", self.runc, "--iidfile", self.iid, "-t", TAG,
                           self.ctx), None
        return [DOCKER, "build", *nc, "--network", "host", "-t", TAG, self.ctx], self.dk_env

    def image_id(self, tool: str, out: str) -> str:
        """The id of the image the build just made, from its output (or buildah's iidfile)."""
        if tool == "buildah":
            with open(self.iid) as f:
                return f.read().strip()
        with open(out, errors="replace") as f:
            text = f.read()
        pat = (r"--> built (sha256:[0-9a-f]{64})" if tool == "imagetool"
               else r"Successfully built ([0-9a-f]{12,64})")
        found = re.findall(pat, text)
        if not found:
            raise CommandFailed(f"{tool}: no image id in its output:\n{text[-2000:]}")
        return found[-1]

    def start(self, archive: str) -> None:
        shutil.copytree(os.path.join(REPO, "examples", "app"), self.ctx)
        os.makedirs(self.it_root)
        r = run([self.imagetool, "--root", self.it_root, "load", "-q", "-i", archive],
                timeout=180)
        if r.rc != 0:
            raise SystemExit(f"build_bench: imagetool load failed:\n{r!r}")
        os.makedirs(self.bh_run)
        r = run(self.bh("pull", "-q", f"docker-archive:{archive}"), timeout=180)
        if r.rc != 0:
            raise SystemExit(f"build_bench: buildah pull failed:\n{r!r}")
        self.dk.start(archive)  # starts dockerd and `docker load`s the archive

    def teardown(self) -> list[str]:
        problems: list[str] = []
        try:
            problems += self.dk.teardown()
        except Exception as e:  # keep tearing down the rest
            problems.append(f"teardown dockerd: {e!r}")
        if os.path.isdir(self.bh_root):
            r = run(self.bh("containers", "-q"), timeout=60)
            problems += [f"buildah container left: {c}" for c in r.out.split()]
            run(self.bh("rm", "--all"), timeout=120)
            run(self.bh("rmi", "--all", "--force"), timeout=120)
        # overlay mounts buildah (and dockerd) leave are unmounted by unmount_and_remove(top)
        return problems
