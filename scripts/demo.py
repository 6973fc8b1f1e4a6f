"""The main job on its embedded default, all in a temporary directory: a busybox bundle
from busybox-static run by `pyrunc run`; then the whole story with imagetool: a busybox base
image by `imagetool import`, examples/app built on it, run with `-d -p` on 127.0.0.1, and
the page it serves. Everything it starts is removed at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.rig import PYRUNC, make_rootfs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGETOOL = os.path.join(os.path.dirname(PYRUNC), "imagetool")

SCRIPT = ('echo "hello from $(hostname), pid $$ in its own namespaces"; '
          'echo "uid: $(id -u), caps: $(grep CapEff /proc/self/status | cut -f2)"; '
          'echo "root is read-only: $(touch /x 2>/dev/null && echo no || echo yes)"')


def runtime_story(tmp: str) -> int:
    """Run: a busybox bundle from busybox-static, pyrunc's default config, `pyrunc run`."""
    bundle = os.path.join(tmp, "bundle")
    make_rootfs(os.path.join(bundle, "rootfs"))
    subprocess.run([PYRUNC, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", SCRIPT]
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    root = os.path.join(tmp, "state")
    cmd = [PYRUNC, "--root", root, "run", "--bundle", bundle, f"demo-{os.getpid()}"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_story(tmp: str) -> int:
    """Build and run: a busybox base image by `imagetool import`, examples/app built on it,
    run detached with a published port on 127.0.0.1, and the page it serves."""
    import tarfile
    import urllib.request
    store = os.path.join(tmp, "store")
    os.makedirs(store)
    bridge = f"itdemo{os.getpid() % 10000}"
    base = os.path.join(tmp, "busybox-rootfs.tar")
    with tarfile.open(base, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(make_rootfs(os.path.join(tmp, "base")), arcname=".")
    port = _free_port()
    steps = [["import", base, "busybox:latest"],
             ["build", "-t", "app:latest", os.path.join(REPO, "examples", "app")],
             ["run", "-d", "--name", "demo-app", "-p", f"127.0.0.1:{port}:80", "app:latest"]]
    try:
        for step in steps:
            cmd = [IMAGETOOL, "--root", store, *step]
            print("$", " ".join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                return 1
            if step[0] == "import":  # the layout exists now: a bridge of the demo's own
                with open(os.path.join(store, "network.json"), "w") as f:
                    json.dump({"bridge": bridge, "subnet": "10.89.250.0/24"}, f)
        page = b""
        for _ in range(50):  # bounded: ~5 s for httpd to listen
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read()
                break
            except OSError:
                time.sleep(0.1)
        print(f"$ curl http://127.0.0.1:{port}/\n{page.decode(errors='replace')}", flush=True)
        return 0 if page else 1
    finally:
        subprocess.run([IMAGETOOL, "--root", store, "rm", "-f", "demo-app"],
                       capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyrunc-demo-") as tmp:
        print("== run: a busybox bundle under pyrunc", flush=True)
        rc = runtime_story(tmp)
        if rc != 0:
            return rc
        print("== build, run: examples/app with imagetool on pyrunc", flush=True)
        return image_story(tmp)


if __name__ == "__main__":
    raise SystemExit(main())
