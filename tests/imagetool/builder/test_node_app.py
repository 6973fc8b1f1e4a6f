"""examples/node-app, the classic Node.js getting-started shape (FROM node, COPY package.json,
RUN npm install, COPY . /code, CMD node src/server.js), built with `imagetool build` on a node
base image made locally from Debian packages (bookworm's nodejs and npm, no Docker Hub) and
run with `imagetool run -d -p`; it must answer over HTTP with a page from its npm dependency.

The base rootfs comes from scripts/make-node-base.sh (mmdebstrap): about a minute cold, so the
tarball is cached outside the repo, under /var/cache/imagetool-tests/node-base/ (or
$IMAGETOOL_TEST_CACHE), keyed by the versions of every package in it; a cached make is a few
seconds (an `apt-get update` of a private apt state, to know the versions). The dependency is a
local `file:` package in the context, so `npm install` needs no registry. Containers, the
bridge, mounts and the store are cleaned up even on failure."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request

import pytest

from imagetool import bundle
from imagetool.run.records import Records
from imagetool.store import Store
from tests.imagetool.conftest import free_port
from tests.imagetool.storehelp import (
    imagetool,
    private_network,
    remove_containers,
    unmount_under,
)

REPO = os.path.join(os.path.dirname(__file__), "..", "..", "..")
APP = os.path.join(REPO, "examples", "node-app")
MAKE_BASE = os.path.join(REPO, "scripts", "make-node-base.sh")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME = "docker.io/library/node-app:latest"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None,
                       reason="needs mmdebstrap (scripts/install.sh installs it)"),
]


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itnode-")
    root = os.path.join(d, "store")
    with contextlib.ExitStack() as undo:   # undone last to first, also on failure
        undo.callback(shutil.rmtree, d, ignore_errors=True)
        undo.callback(unmount_under, d)
        p = subprocess.run([MAKE_BASE], capture_output=True, timeout=900,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise AssertionError(f"{MAKE_BASE} failed ({p.returncode}):\n"
                                 f"{p.stderr.decode(errors='replace')[-3000:]}")
        rootfs = p.stdout.decode().strip().splitlines()[-1]
        imagetool(root, "import", "-e", f"PATH={PATH}", "--cmd", '["node"]', rootfs,
                  "node:debian", timeout=300)
        undo.enter_context(private_network(root, "itn", 87))
        undo.callback(remove_containers, root)
        # the example as a developer has it after a local `npm install`: .dockerignore must
        # keep this node_modules out of `COPY . /code` (it would break the app if copied)
        ctx = os.path.join(d, "node-app")
        shutil.copytree(APP, ctx, ignore=shutil.ignore_patterns("node_modules"))
        decoy = os.path.join(ctx, "node_modules", "greeting")
        os.makedirs(decoy)
        with open(os.path.join(decoy, "index.js"), "w") as f:
            f.write("throw new Error('the context node_modules was copied');\n")
        yield {"dir": d, "root": root, "ctx": ctx}


def _get(url: str, deadline: float = 30) -> bytes:
    """The page, retried until node listens (bounded: the app may never come up)."""
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > end:
                raise AssertionError(f"{url} never answered") from None
            time.sleep(0.2)


def _layer_members(store: Store, desc: dict) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
        return {m.name.removeprefix("./").rstrip("/"): m for m in tf.getmembers()}


def test_node_app_builds_runs_and_rebuilds_from_cache(env):
    root = env["root"]
    p = imagetool(root, "build", "-t", "node-app:latest", env["ctx"], timeout=600)
    out = p.stdout.decode()
    digest = out.strip().splitlines()[-1]
    assert digest.startswith("sha256:") and "1 containers" in out, out
    assert "added 1 package" in out, out  # npm's own report, from the RUN container

    parts = bundle.image_parts(Store(root), NAME)
    conf = parts["config"]["config"]
    assert conf["Cmd"] == ["node", "src/server.js"] and "Entrypoint" not in conf
    assert conf["WorkingDir"] == "/code"
    assert f"PATH={PATH}" in conf["Env"]
    assert "3000/tcp" in conf["ExposedPorts"]

    # layers after the (large) base: WORKDIR, COPY package.json .npmrc, COPY vendor,
    # RUN npm install, COPY . /code
    store = Store(root)
    layers = [_layer_members(store, desc) for desc, _ in parts["chain"][1:]]
    assert len(layers) == 5
    npm = layers[3]
    for f in ("code/node_modules/greeting/package.json", "code/node_modules/greeting/index.js"):
        assert npm[f].isfile(), f"{f} is not a file in the npm install layer"
    assert not any(n.startswith("code/node_modules") for n in layers[4]), \
        ".dockerignore did not keep node_modules out of COPY . /code"
    assert "code/src/server.js" in layers[4]

    port = free_port()
    try:
        imagetool(root, "run", "-d", "--name", "node-app", "-p", f"127.0.0.1:{port}:3000",
                  "node-app:latest")
        page = _get(f"http://127.0.0.1:{port}/").decode()
        assert "<h1>node-app</h1>" in page
        assert "hello imagetool, from greeting 1.2.3" in page  # the npm-installed dependency
        assert "node v18." in page  # Debian bookworm's nodejs, not the host's
        imagetool(root, "stop", "node-app", timeout=60)
        state = Records(root).all()[0]["State"]
        # 0: server.js exited on SIGTERM itself (137 would be stop's SIGKILL after 10 s)
        assert state["Status"] == "exited" and state["ExitCode"] == 0, state
        imagetool(root, "rm", "node-app")
        assert Records(root).ids() == []
    finally:
        remove_containers(root)

    p = imagetool(root, "build", "-t", "node-app:latest", env["ctx"], timeout=300)
    out = p.stdout.decode()
    assert "5 cached, 0 containers" in out and "running in" not in out, out
    assert out.count("Using cache") == 5, out  # WORKDIR, COPY, COPY, RUN, COPY .
    assert out.strip().splitlines()[-1] == digest
