"""`imagetool build` from the command line: examples/app (WORKDIR, ENV, COPY, RUN, CMD on a
busybox base made with `imagetool import`) is built, run with `imagetool run -d -p` and
answers over HTTP; a rebuild is all cache hits and starts no container; errors are one line
naming Dockerfile:LINE. Containers, the bridge and mounts are cleaned up even on failure."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request

import pytest

from tests.imagetool.builder.buildhelp import write_context
from tests.imagetool.conftest import free_port
from tests.imagetool.storehelp import (
    imagetool,
    private_network,
    remove_containers,
    rootfs_tar,
    unmount_under,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
APP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "app")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itbcli-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        with private_network(root, "itb", 88):
            try:
                yield {"dir": d, "root": root}
            finally:
                remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def _get(url: str, tries: int = 50) -> bytes:
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_example_app_builds_runs_and_rebuilds_from_cache(env):
    root = env["root"]
    p = imagetool(root, "build", "-t", "app:latest", "-t", "app:1", APP)
    out = p.stdout.decode()
    digest = out.strip().splitlines()[-1]
    assert digest.startswith("sha256:") and "1 containers" in out
    listed = imagetool(root, "images").stdout.decode()
    assert "app" in listed and "latest" in listed and "1" in listed
    port = free_port()
    try:
        imagetool(root, "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80",
                  "app:latest")
        page = _get(f"http://127.0.0.1:{port}/index.html")
        assert page == b"<h1>example app</h1>\n<p>hello from imagetool build</p>\n"
    finally:
        remove_containers(root)
    started = time.monotonic()
    p = imagetool(root, "build", "-t", "app:latest", APP)
    elapsed = time.monotonic() - started
    out = p.stdout.decode()
    assert "Using cache" in out and "0 containers" in out and "running in" not in out
    assert out.strip().splitlines()[-1] == digest
    assert elapsed < 10


def test_build_errors_name_the_line(env):
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN true\nCOPY nothere /x\n")
    p = imagetool(env["root"], "build", "-t", "bad:1", ctx, check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert "Dockerfile:3" in err and "nothere" in err and len(err.strip().splitlines()) == 1
    assert b"running in" not in p.stdout
    p = imagetool(env["root"], "build", "-t", "bad:1", "-f", "Nope", ctx, check=False)
    assert p.returncode == 1 and "no such Dockerfile" in p.stderr.decode()
    p = imagetool(env["root"], "build", ctx, check=False)  # no -t is fine (docker's rule):
    assert p.returncode == 1 and "Dockerfile:3" in p.stderr.decode()  # the same error



def test_platform_format_compression_options(env):
    from imagetool.builder.plan import Platform
    host = Platform.host()
    other = "linux/arm64" if host.arch != "arm64" else "linux/amd64"
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN echo $TARGETARCH > /arch\n")
    p = imagetool(env["root"], "build", "-t", "plat:1", "--platform", other, ctx, check=False)
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.decode() == (f"imagetool: build: --platform {other}: only the host's "
                                 f"platform {host} can be built here (no emulation)\n")
    p = imagetool(env["root"], "build", "-q", "-t", "plat:1", "--platform", str(host),
                  "--format", "docker", "--compression", "gzip", ctx)
    digest = p.stdout.decode().strip()
    inspected = json.loads(imagetool(env["root"], "inspect", "plat:1").stdout)
    assert inspected[0]["Id"] == digest  # build prints the image ID (config digest)

    assert inspected[0]["Manifest"]["mediaType"] == "application/vnd.docker.distribution." \
        "manifest.v2+json"
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM busybox\nRUN true\nFROM --platform={other} busybox\nRUN true\n")
    p = imagetool(env["root"], "build", "-t", "plat:2", ctx, check=False)
    assert p.returncode == 1 and b"running in" not in p.stdout
    assert p.stderr.decode().startswith(f"imagetool: build: Dockerfile:3: FROM --platform="
                                        f"{other}: only the host's platform {host}")


def test_prune_build_cache_drops_steps_and_cache_mounts(env):
    root = env["root"]
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\n"
                "RUN --mount=type=cache,target=/c,id=pc sh -c 'echo $$ >> /c/runs; "
                "wc -l < /c/runs > /runs'\n")
    try:
        imagetool(root, "build", "-q", "-t", "pc:1", ctx)
        mounts = os.path.join(root, "build-cache-mounts")
        assert os.listdir(mounts) and os.listdir(os.path.join(root, "build-cache"))
        # a plain prune keeps the build cache: a rebuild is a hit
        imagetool(root, "prune", "-q")
        assert "Using cache" in imagetool(root, "build", "-t", "pc:1", ctx).stdout.decode()
        out = imagetool(root, "prune", "--build-cache").stdout.decode()
        assert "Deleted build cache: cache mount pc" in out, out
        assert os.listdir(mounts) == [] and os.listdir(os.path.join(root, "build-cache")) == []
        # everything runs again, on an empty cache mount
        out = imagetool(root, "build", "-t", "pc:1", ctx).stdout.decode()
        assert "Using cache" not in out, out
        runs = imagetool(root, "run", "--rm", "--network", "none", "pc:1", "cat", "/runs")
        assert runs.stdout.strip() == b"1"
    finally:
        imagetool(root, "rmi", "pc:1", check=False)
        shutil.rmtree(ctx, ignore_errors=True)


def test_label_and_iidfile(env):
    root = env["root"]
    iid = os.path.join(env["dir"], "iid")
    imagetool(root, "build", "-q", "-t", "lab:1", "--label", "org.example.team=infra",
              "--label", "empty=", "--iidfile", iid, APP)
    from imagetool.store import Store
    store = Store(root)
    manifest = store.read_json(store.get_image("docker.io/library/lab:1"))
    with open(iid) as f:
        assert f.read() == manifest["config"]["digest"]
    labels = store.read_json(manifest["config"])["config"]["Labels"]
    assert labels["org.example.team"] == "infra" and labels["empty"] == ""
    # the Dockerfile's own labels stay; --label wins where both set one
    from tests.imagetool.builder.buildhelp import write_context
    ctx = write_context(env["dir"], "FROM busybox\nLABEL a=dockerfile b=kept\n")
    imagetool(root, "build", "-q", "-t", "lab:3", "--label", "a=cli", ctx)
    m3 = store.read_json(store.get_image("docker.io/library/lab:3"))
    assert store.read_json(m3["config"])["config"]["Labels"] == {"a": "cli", "b": "kept"}
    imagetool(root, "rmi", "lab:3")
    shutil.rmtree(ctx)
    p = imagetool(root, "build", "-t", "lab:2", "--label", "=x", APP, check=False)
    assert p.returncode == 2 and b"--label '=x': want KEY=VALUE" in p.stderr
    imagetool(root, "rmi", "lab:1")


def test_missing_base_is_pulled_unless_pull_never(env, registry):
    """A base the store lacks is pulled, as docker build does (a real docker-registry on
    127.0.0.1); --pull-never refuses naming the line; --pull pulls even a present one."""
    root = env["root"]
    reg = registry("plain")
    remote = reg.ref("lib/busybox:base")
    imagetool(root, "push", "-q", "busybox", remote)
    ctx = write_context(env["dir"], f"FROM {remote}\nRUN echo built > /b\n")
    try:
        p = imagetool(root, "build", "-t", "pulled:1", "--pull-never", ctx, check=False)
        assert p.returncode != 0
        assert f"Dockerfile:1: image {remote} is not in the store" in p.stderr.decode()
        out = imagetool(root, "build", "-t", "pulled:1", ctx).stdout.decode()
        assert f"--> pulling {remote}" in out, out
        out = imagetool(root, "build", "-t", "pulled:1", ctx).stdout.decode()
        assert "--> pulling" not in out and "Using cache" in out   # present now
        out = imagetool(root, "build", "-t", "pulled:1", "--pull", ctx).stdout.decode()
        assert f"--> pulling {remote}" in out and "Using cache" in out   # same digest
        gone = reg.ref("lib/nothing:here")
        ctx2 = write_context(env["dir"], f"FROM busybox\nCOPY --from={gone} /x /x\n")
        p = imagetool(root, "build", "-t", "pulled:2", ctx2, check=False)
        assert p.returncode != 0
        assert f"Dockerfile:2: image {gone} is not in the store and cannot be pulled" in \
            p.stderr.decode(), p.stderr.decode()
    finally:
        imagetool(root, "rmi", "pulled:1", check=False)
        imagetool(root, "rmi", remote, check=False)
        shutil.rmtree(ctx, ignore_errors=True)
