"""The Dockerfile matrix (conformance/engines/build_cases.py): each Dockerfile built by `docker
build` with BuildKit (a private dockerd 20.10, base busybox loaded from our `imagetool save
--format docker`) and by `imagetool build`, then compared on the image config (Env, Cmd,
Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal, Healthcheck, Shell,
OnBuild) and on every file (type, mode, owner, group, content or link target): ours through our
own unpack, docker's through `docker create` + `docker export`, docker's own files left out. A
difference fails the case unless build_cases.ACCEPTED names it with its reason.

Skipped, with the reason, when dockerd is not installed or cannot start here."""

from __future__ import annotations

import json
import os

import pytest

from conformance.engines.build_cases import ACCEPTED, CASES, Case
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import busybox_store, write_context
from tests.imagetool.builder.treecompare import DOCKER_OWN, diff_trees, tar_tree, tree
from tests.imagetool.storehelp import imagetool, running_dockerd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild")


@pytest.fixture(scope="module")
def env():
    with busybox_store("itbmatrix-") as e:
        yield e


@pytest.fixture(scope="module")
def dockerd(env):
    with running_dockerd() as d:
        base = os.path.join(env["dir"], "busybox.tar")
        imagetool(env["root"], "save", "--format", "docker", "-o", base, "busybox:latest")
        d.docker("load", "-i", base)
        d.env["DOCKER_BUILDKIT"] = "1"
        yield d


def _norm(value):
    return value if value not in (None, [], {}, "") else None


def _ours(env: dict[str, str], case: Case, ctx: str) -> tuple[dict, dict[str, tuple]]:
    root, tag = env["root"], f"m-{case.name}:latest"
    imagetool(root, "build", "-q", "--network", "none", "-t", tag, ctx, timeout=300)
    store = Store(root)
    desc = store.get_image(f"docker.io/library/{tag}")
    assert desc is not None, tag
    config = store.read_json(store.read_json(desc)["config"])["config"]
    bundle = os.path.join(env["dir"], f"b-{case.name}")
    imagetool(root, "unpack", tag, bundle)
    return config, tree(os.path.join(bundle, "rootfs"), DOCKER_OWN)


def _docker(env: dict[str, str], dockerd, case: Case, ctx: str) -> tuple[dict, dict[str, tuple]]:
    tag = f"m-{case.name}:latest"
    p = dockerd.docker("build", "--network", "none", "-t", tag, ctx, check=False, timeout=300)
    assert p.returncode == 0, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]
    [info] = json.loads(dockerd.docker("image", "inspect", tag).stdout)
    cid = dockerd.docker("create", tag, "sh").stdout.decode().strip()
    exported = os.path.join(env["dir"], f"x-{case.name}.tar")
    try:
        dockerd.docker("export", "-o", exported, cid)
    finally:
        dockerd.docker("rm", "-f", cid, check=False)
    try:
        return info["Config"], tar_tree(exported, DOCKER_OWN)
    finally:
        os.unlink(exported)


def test_the_matrix_is_wide_enough():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert set(ACCEPTED) <= {c.name for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_buildkit_and_ours_agree(env, dockerd, case):
    ctx = write_context(env["dir"], case.dockerfile, case.files)
    case.write(ctx)
    ours_conf, ours = _ours(env, case, ctx)
    theirs_conf, theirs = _docker(env, dockerd, case, ctx)
    accepted = ACCEPTED.get(case.name, {})
    conf_diff = [f"{k}: ours {ours_conf.get(k)!r} docker's {theirs_conf.get(k)!r}"
                 for k in CONFIG_KEYS
                 if k not in accepted and _norm(ours_conf.get(k)) != _norm(theirs_conf.get(k))]
    assert not conf_diff, "\n".join(conf_diff)
    found = [d for d in diff_trees(ours, theirs)
             if d.split(": ", 1)[-1].split(":")[0] not in accepted
             and d.split(":")[0] not in accepted]
    assert not found, "\n".join(found[:40])
    # each accepted difference is still a difference (else it is stale and must go)
    for path in accepted:
        if path not in CONFIG_KEYS:
            assert path in ours and ours.get(path) != theirs.get(path), \
                f"{path}: no longer differs; remove it from ACCEPTED"
