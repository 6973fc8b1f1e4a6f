"""Build time over the Dockerfile matrix: `imagetool build` vs `docker build` (BuildKit) vs
`buildah bud`, every case of conformance/engines/build_cases.py.

    .venv/bin/python -m bench.build_matrix_bench [--runs N] [--json OUT] [--code snapshot|as-is]

The same busybox base in each tool's private store (as bench/build_bench.py puts it there),
every case's context written once, then N rounds (default 1; the tools in an order rotated
every round), each tool building every case twice:

  cold     --no-cache: no step comes from the cache (the base is in the store)
  rebuild  the same command straight after: nothing changed, every step may be cached

A case a tool cannot build (its frontend lacks a flag) is left out of every tool's total and
listed. Wall seconds per case, summed per tool and round; the ratios are imagetool's total
over each peer's. Goals (issue 17): cold <= 0.5x the fastest peer, rebuild <= 1.0x.
RUN steps get `--network none` in all three (no case needs a network).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from typing import Any

from bench._builders import Builders
from bench._code import imagetool_launcher, snapshot_src
from bench._common import (
    CommandFailed,
    base_meta,
    common_args,
    first_line,
    footer,
    git_state,
    save_result,
    sigterm_exit,
    table,
    timed,
)
from bench._engines import DOCKER, build_image
from conformance.engines.build_cases import CASES, fill_context
from conformance.engines.procs import short_tempdir, unmount_and_remove, which

TOOLS = ("imagetool", "docker", "buildah")
KINDS = ("cold", "rebuild")
GOAL_COLD = 0.5
GOAL_REBUILD = 1.0


class MatrixBuilders(Builders):
    """bench/_builders.py's three private stores, building one context per matrix case."""

    def __init__(self, top: str, imagetool: str) -> None:
        super().__init__(top, imagetool)
        self.dk_env = dict(self.dk.env, DOCKER_BUILDKIT="1")
        self.ctxs: dict[str, str] = {}

    def write_contexts(self) -> None:
        for case in CASES:
            ctx = os.path.join(self.top, "ctx", case.name)
            os.makedirs(ctx)
            fill_context(ctx, case.dockerfile, case.files)
            case.write(ctx)
            self.ctxs[case.name] = ctx

    def case_argv(self, tool: str, kind: str, name: str) -> tuple[list[str], dict | None]:
        nc = ["--no-cache"] if kind == "cold" else []
        tag, ctx = f"m-{name}:latest", self.ctxs[name]
        if tool == "imagetool":
            return [self.imagetool, "--root", self.it_root, "build", "-q", *nc, "--network",
                    "none", "-t", tag, ctx], None
        if tool == "buildah":
            return self.bh("bud", "-q", "--layers", *nc, "--pull=never", "--network", "none",
                           "--runtime", self.runc, "-t", tag, ctx), None
        return [DOCKER, "build", "-q", *nc, "--network", "none", "-t", tag, ctx], self.dk_env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 1, warmup=False, code="imagetool/runtime")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("build_matrix_bench: run as root")
    signal.signal(signal.SIGTERM, sigterm_exit)
    top = short_tempdir("bm-")
    started, load_before = time.monotonic(), os.getloadavg()
    b: MatrixBuilders | None = None
    problems: list[str] = []
    per_case: dict[str, dict[str, dict[str, list[float]]]] = {}
    failed: dict[str, set[str]] = {t: set() for t in TOOLS}
    try:
        src = snapshot_src(args.code, top)
        b = MatrixBuilders(top, imagetool_launcher(src, top))
        b.start(build_image(top))
        b.write_contexts()
        errlog = os.path.join(top, "clients.log")
        for i in range(args.runs):
            k = i % len(TOOLS)
            for tool in TOOLS[k:] + TOOLS[:k]:
                for case in CASES:
                    for kind in KINDS:
                        argv_, env = b.case_argv(tool, kind, case.name)
                        t = timed(argv_, errlog, env=env)
                        if t.rc != 0:
                            failed[tool].add(case.name)
                            break
                        per_case.setdefault(case.name, {}).setdefault(kind, {}).setdefault(
                            tool, []).append(t.wall_ms / 1e3)
                print(f"\rround {i + 1}/{args.runs}: {tool} done", end="", file=sys.stderr,
                      flush=True)
        print(file=sys.stderr)
    except CommandFailed as e:
        print(f"\nbuild_matrix_bench: {e}", file=sys.stderr)
        return 1
    finally:
        if b is not None:
            problems += b.teardown()
        problems += unmount_and_remove(top)
        if problems:
            print("cleanup problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    assert b is not None
    left_out = sorted(set().union(*failed.values()))
    used = [c.name for c in CASES if c.name not in left_out]
    totals = {kind: {tool: [sum(per_case[n][kind][tool][r] for n in used)
                            for r in range(args.runs)] for tool in TOOLS} for kind in KINDS}
    med = {kind: {tool: sorted(v)[len(v) // 2] for tool, v in d.items()}
           for kind, d in totals.items()}
    fastest = {kind: min(("docker", "buildah"), key=lambda p, k=kind: med[k][p])
               for kind in KINDS}
    ratios = {kind: {p: round(med[kind]["imagetool"] / med[kind][p], 3)
                     for p in ("docker", "buildah")} for kind in KINDS}
    goals = {
        f"cold <= {GOAL_COLD}x the fastest peer ({fastest['cold']})":
            ratios["cold"][fastest["cold"]] <= GOAL_COLD,
        f"rebuild <= {GOAL_REBUILD}x the fastest peer ({fastest['rebuild']})":
            ratios["rebuild"][fastest["rebuild"]] <= GOAL_REBUILD,
    }
    result: dict[str, Any] = {
        "cases": len(used), "left_out": {t: sorted(f) for t, f in failed.items() if f},
        "totals_s": totals, "median_total_s": med, "ratios": ratios, "goals": goals,
        "per_case_s": per_case,
    }
    result["meta"] = {
        **base_meta(args, started, load_before),
        "commands": {t: " ".join(b.case_argv(t, "cold", CASES[0].name)[0]) for t in TOOLS},
        "docker_env": {"DOCKER_BUILDKIT": "1"},
        "versions": {"buildah": first_line([b.buildah, "--version"]),
                     "dockerd": first_line([which("dockerd"), "--version"]),
                     "python": platform.python_version()},
        "git": git_state(), "cleanup_problems": problems,
    }
    rows = [[f"{kind} {tool}", f"{med[kind][tool]:.2f}",
             "" if tool == "imagetool" else f"{ratios[kind][tool]:.3f}"]
            for kind in KINDS for tool in TOOLS]
    print(f"{len(used)} cases (left out, some tool could not build them: "
          f"{', '.join(left_out) or 'none'})")
    print(table(["build over the matrix", "total s (median of rounds)",
                 "imagetool / this"], rows))
    for g, ok in goals.items():
        print(f"goal {g}: {'PASS' if ok else 'FAIL'}")
    print(footer(result["meta"]))
    print(f"JSON: {save_result('build_matrix', result, args.json)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
