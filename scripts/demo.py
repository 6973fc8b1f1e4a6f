"""The main job on its embedded default: build a busybox bundle from busybox-static in a
temporary directory, write pyrunc's default config.json, and `pyrunc run` it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.rig import PYRUNC, make_rootfs  # noqa: E402

SCRIPT = ('echo "hello from $(hostname), pid $$ in its own namespaces"; '
          'echo "uid: $(id -u), caps: $(grep CapEff /proc/self/status | cut -f2)"; '
          'echo "root is read-only: $(touch /x 2>/dev/null && echo no || echo yes)"')


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyrunc-demo-") as tmp:
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


if __name__ == "__main__":
    raise SystemExit(main())
