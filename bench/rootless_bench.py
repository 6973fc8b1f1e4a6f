"""Rootless `run --rm IMAGE true`: imagetool vs podman, as the same ordinary user.

    .venv/bin/python -m bench.rootless_bench [--runs N] [--baseline DIR]

Makes a user with a subordinate range (removed afterwards, with every process it left, by
pid), imports the same busybox rootfs into both tools' per-user stores, then times, in an
order rotated every round, `imagetool run --rm` and `podman run --rm` with `--network none`
and with each tool's default network (imagetool: slirp4netns; podman 4.3: slirp4netns).
The default network needs /dev/net/tun open to users: both tools run in a private mount
namespace whose /dev/net/tun is a 0666 node of the bench's own
(conformance/engines/tunns.py; the host's node is not touched). Prints medians and the
ratio imagetool/podman."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time

from bench._common import REPO
from conformance.engines.bundles import rootfs_tar
from conformance.engines.procs import Unavailable
from conformance.engines.rootless_user import RootlessUser, kill_user_processes, rootless_user
from conformance.engines.tunns import host_has_tun, tun_namespace

IT = os.path.join(REPO, ".venv", "bin", "imagetool")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--baseline", metavar="DIR", help="also time the imagetool and runtime "
                    "packages of this other tree (e.g. an older commit's `git archive`), "
                    "in the same rounds")
    a = ap.parse_args()
    tun = tun_namespace(0o666) if host_has_tun() else contextlib.nullcontext()
    try:
        with rootless_user("itool-rl-bench", subids=True) as u, tun as ns:
            if ns is not None:
                u = dataclasses.replace(u, prefix=ns.prefix)
            try:
                return _bench(u, a.runs, ns is not None, a.baseline)
            finally:
                kill_user_processes(u.name)
    except Unavailable as e:
        print(f"rootless_bench: {e}", file=sys.stderr)
        return 1


def _bench(u: RootlessUser, runs: int, tun: bool, baseline: str | None = None) -> int:
    """Import, warm up, time; print the table."""
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
    nets = ["none"] + (["default"] if tun else [])
    cmds = {}
    paths = {"imagetool": REPO, "baseline": os.path.abspath(baseline or REPO)}
    for net in nets:
        flag = ["--network", "none"] if net == "none" else []
        cmds[("imagetool", net)] = [IT, "run", "--rm", *flag, "busybox:latest", "true"]
        if baseline:
            cmds[("baseline", net)] = cmds[("imagetool", net)]
        cmds[("podman", net)] = ["podman", "--runtime", "runc", "run", "--rm", *flag,
                                 "busybox:latest", "true"]
    times: dict[tuple[str, str], list[float]] = {k: [] for k in cmds}
    keys = list(cmds)
    for k in keys:  # warm-up (podman's pause process, bytecode, snapshots)
        u.run(*cmds[k], env={"PYTHONPATH": paths.get(k[0], REPO)})
    for i in range(runs):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t0 = time.perf_counter()
            r = u.run(*cmds[k], env={"PYTHONPATH": paths.get(k[0], REPO)})
            dt = (time.perf_counter() - t0) * 1000
            if r.returncode != 0:
                print(f"{k}: failed: {r.stderr.strip()}", file=sys.stderr)
                return 1
            times[k].append(dt)
    print(f"rootless `run --rm busybox true`, medians of {runs} interleaved runs (ms, "
          "through runuser)")
    if baseline:
        print(f"baseline: {paths['baseline']}")
        print("| network | baseline | imagetool | podman | baseline/podman | imagetool/podman |")
        print("|---|---|---|---|---|---|")
    else:
        print("| network | imagetool | podman | imagetool/podman |")
        print("|---|---|---|---|")
    for net in nets:
        mi = statistics.median(times[("imagetool", net)])
        mp = statistics.median(times[("podman", net)])
        if baseline:
            mb = statistics.median(times[("baseline", net)])
            print(f"| {net} | {mb:.0f} | {mi:.0f} | {mp:.0f} | {mb / mp:.2f}x | {mi / mp:.2f}x |")
        else:
            print(f"| {net} | {mi:.0f} | {mp:.0f} | {mi / mp:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
