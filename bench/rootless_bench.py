"""Rootless `run --rm IMAGE true`: imagetool vs podman, as the same ordinary user.

    .venv/bin/python -m bench.rootless_bench [--runs N] [--open-tun]

Makes a user with a subordinate range (removed afterwards, with every process it left, by
pid), imports the same busybox rootfs into both tools' per-user stores, then times, in an
order rotated every round, `imagetool run --rm` and `podman run --rm` with `--network none`
and with each tool's default network (imagetool: slirp4netns; podman 4.3: slirp4netns).
The default network needs /dev/net/tun open to users; --open-tun sets it to Debian's 0666 for
the run and puts the old mode back. Prints medians and the ratio imagetool/podman."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from tests.imagetool.rootless.conftest import REPO, _make_user
from tests.imagetool.storehelp import rootfs_tar

TUN = "/dev/net/tun"
IT = os.path.join(REPO, ".venv", "bin", "imagetool")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--open-tun", action="store_true")
    a = ap.parse_args()
    old = os.stat(TUN).st_mode & 0o7777
    if a.open_tun:
        os.chmod(TUN, 0o666)
    gen = _make_user("itool-rl-bench", subids=True)
    u = next(gen)
    try:
        d = os.path.join(u.home, "b")
        os.makedirs(d)
        tar = rootfs_tar(d)
        os.chmod(d, 0o755)
        os.chmod(tar, 0o644)
        for argv in ([IT, "import", tar, "busybox:latest"],
                     ["podman", "import", "-q", tar, "busybox:latest"]):
            r = u.run(*argv, env={"PYTHONPATH": REPO})
            if r.returncode != 0:
                print(f"{argv[0]} import failed: {r.stderr.strip()}", file=sys.stderr)
                return 1
        nets = ["none"] + (["default"] if os.stat(TUN).st_mode & 0o006 == 0o006 else [])
        cmds = {}
        for net in nets:
            flag = ["--network", "none"] if net == "none" else []
            cmds[("imagetool", net)] = [IT, "run", "--rm", *flag, "busybox:latest", "true"]
            cmds[("podman", net)] = ["podman", "--runtime", "runc", "run", "--rm", *flag,
                                     "busybox:latest", "true"]
        times: dict[tuple[str, str], list[float]] = {k: [] for k in cmds}
        keys = list(cmds)
        for k in keys:  # warm-up (podman's pause process, bytecode, snapshots)
            u.run(*cmds[k], env={"PYTHONPATH": REPO})
        for i in range(a.runs):
            for k in keys[i % len(keys):] + keys[:i % len(keys)]:
                t0 = time.perf_counter()
                r = u.run(*cmds[k], env={"PYTHONPATH": REPO})
                dt = (time.perf_counter() - t0) * 1000
                if r.returncode != 0:
                    print(f"{k}: failed: {r.stderr.strip()}", file=sys.stderr)
                    return 1
                times[k].append(dt)
        print(f"rootless `run --rm busybox true`, medians of {a.runs} interleaved runs (ms, "
              "through runuser)")
        print("| network | imagetool | podman | imagetool/podman |")
        print("|---|---|---|---|")
        for net in nets:
            mi = statistics.median(times[("imagetool", net)])
            mp = statistics.median(times[("podman", net)])
            print(f"| {net} | {mi:.0f} | {mp:.0f} | {mi / mp:.2f}x |")
        return 0
    finally:
        for _ in gen:
            pass
        os.chmod(TUN, old)


if __name__ == "__main__":
    sys.exit(main())
