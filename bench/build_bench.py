"""Image build time: `imagetool build` vs `buildah bud` vs `docker build` on examples/app.

    .venv/bin/python -m bench.build_bench [--runs N] [--json OUT] [--code snapshot|as-is]

One busybox base image (conformance/engines/bundles.py: busybox-static -> umoci -> skopeo
docker-archive, no internet) put into each tool's private store the same way
(`imagetool load`, `buildah pull docker-archive:`, `docker load`), then N rounds (default 5),
the tools in an order rotated every round, each tool doing two builds of a copy of
examples/app (FROM busybox:latest, WORKDIR, ENV, COPY, RUN, EXPOSE, CMD):

  cold     a build that reuses no cached step: the base image is in the store (and unpacked
           where the tool keeps it so), every step runs again
             imagetool --root R build --no-cache -t app:latest CTX
             buildah --root R --runroot RR bud --layers --no-cache --pull=never
                     --network host --runtime runc -t app:latest CTX
             docker build --no-cache --network host -t app:latest CTX   (DOCKER_BUILDKIT=0)
  rebuild  the same command without --no-cache straight after it: nothing changed, every step
           must come from the cache (checked every round: the image id is one a cold build
           made, and the cold build's output never says "Using cache")

RUN steps use the host network in all three (imagetool's RUN has no network namespace, so the
peers get `--network host` too); buildah runs RUN through runc (its default crun refuses this
hybrid-cgroup host). dockerd 20.10 is our own (bench/_engines.py's Dockerd: own dirs,
unix socket, no iptables/bridge); buildah's storage is under the temp dir (--root/--runroot);
imagetool has its own --root and runs from a compiled snapshot of imagetool/ and runtime/
(`--code as-is` for the checkout). Wall seconds from spawn to exit; median, p10/p90, and the
ratios imagetool / the faster peer. Goals (issue 7): cold <= 1.0x the faster peer, no-change
rebuild <= 0.3 s. See bench/README.md ("Build: imagetool vs buildah and docker").
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import time
from typing import Any

from bench._builders import Builders
from bench._code import imagetool_launcher, snapshot_src
from bench._common import (
    CommandFailed,
    base_meta,
    check,
    common_args,
    first_line,
    footer,
    git_state,
    ratio_ci,
    save_result,
    sigterm_exit,
    summarise_s,
    table,
)
from bench._engines import DOCKER, build_image
from conformance.engines.procs import short_tempdir, unmount_and_remove, which

TOOLS = ("imagetool", "buildah", "docker")
PEERS = ("buildah", "docker")
KINDS = ("cold", "rebuild")
GOAL_COLD = 1.0       # imagetool cold / the faster peer's cold
GOAL_REBUILD_S = 0.3  # imagetool's no-change rebuild, seconds


def analyse(walls: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    summ = {k: {t: summarise_s(walls[k][t]) for t in TOOLS} for k in KINDS}
    ratios: dict[str, Any] = {}
    for k in KINDS:
        for p in PEERS:
            a, b = walls[k]["imagetool"], walls[k][p]
            ratios[f"{k} imagetool/{p}"] = {
                "of_medians": round(summ[k]["imagetool"]["median"] / summ[k][p]["median"], 3),
                "ci90": ratio_ci(a, b),
                "paired_median": round(statistics.median(x / y for x, y in
                                                         zip(a, b, strict=True)), 3),
                "share_imagetool_slower": round(statistics.fmean(x > y for x, y in
                                                                 zip(a, b, strict=True)), 3),
                "delta_s": round(summ[k]["imagetool"]["median"] - summ[k][p]["median"], 6),
            }
    faster = {k: min(PEERS, key=lambda p, k=k: summ[k][p]["median"]) for k in KINDS}
    cold = ratios[f"cold imagetool/{faster['cold']}"]["of_medians"]
    goals = {
        f"cold <= {GOAL_COLD}x the faster peer ({faster['cold']})": cold <= GOAL_COLD,
        f"no-change rebuild <= {GOAL_REBUILD_S} s":
            summ["rebuild"]["imagetool"]["median"] <= GOAL_REBUILD_S,
    }
    return {"summary": summ, "faster_peer": faster, "ratios": ratios, "goals": goals}


def report(result: dict[str, Any]) -> str:
    rows = [[f"{k} {t}", f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}",
             f"{s['min']:.3f}"]
            for k, d in result["summary"].items() for t, s in d.items()]
    out = [table(["build tool", "median s", "p10 s", "p90 s", "min s"], rows), ""]
    rrows = []
    for k, r in result["ratios"].items():
        lo, hi = r["ci90"]
        peer = k.split("/")[1]
        mark = " *" if result["faster_peer"][k.split()[0]] == peer else ""
        rrows.append([k + mark, f"{r['of_medians']:.3f}", f"{lo:.2f}-{hi:.2f}",
                      f"{r['paired_median']:.3f}", f"{r['delta_s']:+.3f}",
                      f"{r['share_imagetool_slower'] * 100:.0f} %"])
    out += [table(["ratio (* = faster peer)", "of medians", "90% CI", "paired median",
                   "diff s", "rounds imagetool slower"], rrows), ""]
    for k, ok in result["goals"].items():
        out.append(f"goal {k}: {'PASS' if ok else 'FAIL'}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 5, warmup=False, code="imagetool/runtime")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("build_bench: run as root")
    if not os.access(DOCKER, os.X_OK):
        raise SystemExit(f"build_bench: {DOCKER} (docker.io's 20.10 client) not found")
    signal.signal(signal.SIGTERM, sigterm_exit)
    top = short_tempdir("bb-")
    started = time.monotonic()
    load_before = os.getloadavg()
    b: Builders | None = None
    problems: list[str] = []
    result: dict[str, Any] = {}
    walls: dict[str, dict[str, list[float]]] = {k: {t: [] for t in TOOLS} for k in KINDS}
    ids: dict[str, list[str]] = {t: [] for t in TOOLS}
    rebuild_ids: dict[str, list[str]] = {t: [] for t in TOOLS}
    round_load: list[float] = []
    try:
        src = snapshot_src(args.code, top)
        b = Builders(top, imagetool_launcher(src, top))
        b.start(build_image(top))
        errlog = os.path.join(top, "clients.log")
        out = os.path.join(top, "out.txt")
        outputs: dict[str, str] = {}
        for i in range(args.runs):
            k = i % len(TOOLS)
            for tool in TOOLS[k:] + TOOLS[:k]:
                got = []
                for kind in KINDS:
                    argv_, env = b.argv(tool, kind)
                    t = check(argv_, errlog, stdout=out, env=env)
                    walls[kind][tool].append(t.wall_ms / 1e3)
                    got.append(b.image_id(tool, out))
                    with open(out, errors="replace") as f:
                        text = f.read()
                    if kind == "cold" and "Using cache" in text:
                        raise CommandFailed(f"{tool}: the cold build used its cache:\n{text}")
                    if i == 0:
                        outputs[f"{kind} {tool}"] = text
                ids[tool].append(got[0])
                # Every cold build makes a new image (its RUN layer and timestamps are new), so
                # a fully cached rebuild makes one of them again: this round's, or an earlier
                # round's when the tool's cache lookup finds that chain first (buildah does).
                if got[1] not in ids[tool]:
                    raise CommandFailed(f"{tool}: the rebuild made {got[1]}, no cold build's "
                                        f"image: not every step was cached")
                rebuild_ids[tool].append(got[1])
            round_load.append(os.getloadavg()[0])
            print(f"\rround {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        result = analyse(walls)
        result["first_round_output"] = outputs
    except CommandFailed as e:
        print(f"\nbuild_bench: {e}", file=sys.stderr)
        result = {}
    finally:
        if b is not None:
            problems += b.teardown()
        problems += unmount_and_remove(top)
        if problems:
            print("cleanup problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    if not result:
        return 1
    assert b is not None
    result["meta"] = {
        **base_meta(args, started, load_before),
        "loadavg_1m_per_round": round_load,
        "commands": {f"{k} {t}": " ".join(b.argv(t, k)[0]) for k in KINDS for t in TOOLS},
        "docker_env": {"DOCKER_BUILDKIT": "0"},
        "versions": {
            "buildah": first_line([b.buildah, "--version"]),
            "dockerd": first_line([which("dockerd"), "--version"]),
            "docker": first_line([DOCKER, "--version"]),
            "runc": first_line([b.runc, "--version"]),
            "python": platform.python_version(),
        },
        "git": git_state(), "cleanup_problems": problems,
    }
    result["image_ids_per_round"] = {"cold": ids, "rebuild": rebuild_ids}
    result["samples"] = walls
    print(report(result))
    print(footer(result["meta"]))
    print(f"JSON: {save_result('build', result, args.json)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
