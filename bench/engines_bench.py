"""Engine-level latency: `ctr run --rm` and `docker run --rm` with pyrunc, runc and crun.

    .venv/bin/python -m bench.engines_bench [--runs N] [--warmup N] [--json OUT]
                                            [--code snapshot|as-is]

Starts its own containerd 1.6 (for ctr) and its own dockerd 20.10 (which starts its own
containerd), each with private dirs and unix sockets only, loads a busybox image built here
(conformance/engines/bundles.py: busybox-static -> umoci -> skopeo, no internet),
then per round, in an order rotated every round so drift hits every pair alike, times:

  ctr     `ctr -a SOCK -n NS-X run --rm --runc-binary X IMAGE ID true`
  docker  `docker run --rm --network none --runtime X busybox true`

for X = pyrunc, runc and crun (through the unshare wrapper crun needs on this hybrid cgroup
host). Both engines drive the runtime through containerd-shim-runc-v2. Wall seconds per
command; medians, p10/p90 and the ratios pyrunc/runc and pyrunc/crun per engine.
Goal (issue 4): pyrunc's engine-level latency within 1.05x of runc's.
See bench/README.md ("Engines: ctr and docker") for what is measured and the latest figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench._code import pyrunc_under_test
from bench._common import (
    CommandFailed,
    base_meta,
    cgroup_leftovers,
    check,
    common_args,
    first_line,
    footer,
    git_state,
    ratio_ci,
    save_result,
    sigterm_exit,
    stale_bytecode,
    summarise_s,
    table,
)
from bench._engines import (
    CTR_IMAGE,
    DOCKER,
    UNIFIED,
    Containerd,
    Dockerd,
    Runtime,
    build_image,
)
from conformance.engines.drivers import crun_wrapper_text
from conformance.engines.procs import run, short_tempdir, unmount_and_remove, which, write_exec
from conformance.engines.wrapper import Wrapper

ENGINES = ("ctr", "docker")
OTHERS = ("pyrunc", "runc", "crun", "crun-net")  # row order; crun-net is derived
GOAL = 1.05  # pyrunc / runc, per engine
@dataclass
class Subject:
    """One (engine, runtime) pair and its samples: wall seconds, and the client's CPU
    seconds (user+sys of ctr/docker itself; the daemon, shim and runtime are not in it)."""

    engine: str
    runtime: Runtime
    wall: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.engine} {self.runtime.name}"


class Bench:
    """Rounds of every (engine, runtime) pair plus the wrapper probe, rotated each round."""

    def __init__(self, top: str, ctd: Containerd, dk: Dockerd, runtimes: list[Runtime]) -> None:
        self.errlog = os.path.join(top, "clients.log")
        self.probe = write_exec(os.path.join(top, "wrap-true"), crun_wrapper_text("/bin/true"))
        self.wrap_s: list[float] = []
        self.ctd = ctd
        self.dk = dk
        self.tag = ctd.tag
        self.seq = 0
        self.subjects = [Subject(e, rt) for e in ENGINES for rt in runtimes]
        self.round_load: list[float] = []

    def once(self, s: Subject, record: bool) -> None:
        if s.engine == "ctr":
            self.seq += 1
            t = check(self.ctd.run_argv(s.runtime, f"{self.tag}-{self.seq}"), self.errlog)
        else:
            t = check(self.dk.run_argv(s.runtime), self.errlog, env=self.dk.env)
        if record:
            s.wall.append(t.wall_ms / 1e3)
            s.client_cpu.append(t.cpu_ms / 1e3)

    def round(self, index: int, record: bool) -> None:
        jobs: list[Subject | None] = [None, *self.subjects]  # None: the wrapper probe
        k = index % len(jobs)
        for s in jobs[k:] + jobs[:k]:
            if s is not None:
                self.once(s, record)
                continue
            t = check([self.probe], self.errlog)
            if record:
                self.wrap_s.append(t.wall_ms / 1e3)
        if record:
            self.round_load.append(os.getloadavg()[0])


def preflight(ctd: Containerd, dk: Dockerd, runtimes: list[Runtime],
              checks: dict[str, Wrapper]) -> dict[str, dict[str, list[str]]]:
    """Once per (engine, runtime), untimed: the same command with the runtime behind the
    argv-logging wrapper (conformance/engines/wrapper.py; `--runc-binary W` for ctr, a second
    dockerd runtime `X-chk=W` for docker), to show that the engine really runs X for create,
    start and delete and that each of those calls succeeds. Returns the calls seen."""
    seen: dict[str, dict[str, list[str]]] = {e: {} for e in ENGINES}
    for rt in runtimes:
        w = checks[rt.name]
        for engine in ENGINES:
            mark = w.mark()
            if engine == "ctr":
                argv = ctd.argv(ctd.ns[rt.name], "run", "--rm", "--runc-binary", w.path,
                                CTR_IMAGE, f"{ctd.tag}-chk-{rt.name}", "true")
                r = run(argv, timeout=120)
            else:
                argv = dk.run_argv(rt, f"{rt.name}-chk")
                r = run(argv, env=dk.env, timeout=120)
            calls = w.since(mark)
            seen[engine][rt.name] = [f"{c.sub}={c.rc}" for c in calls]
            ok = {c.sub for c in calls if c.rc == 0}
            if r.rc != 0 or not {"create", "start", "delete"} <= ok:
                raise SystemExit(f"engines_bench: preflight {engine} {rt.name} failed:\n{r!r}\n"
                                 f"{w.report(mark)}")
    return seen


def analyse(bench: Bench, crun_calls: dict[str, int]) -> dict[str, Any]:
    """Summaries per pair, `crun-net` rows (crun minus the wrapper probe's median once per
    crun call the shim makes, counted in the preflight), ratios of medians with bootstrap
    intervals, and the share of rounds in which pyrunc was slower than runc."""
    walls = {s.key: s.wall for s in bench.subjects}
    cpu = {s.key: s.client_cpu for s in bench.subjects}
    wrap = summarise_s(bench.wrap_s)
    for e in ENGINES:
        shift = crun_calls[e] * wrap["median"]
        walls[f"{e} crun-net"] = [x - shift for x in walls[f"{e} crun"]]
    summ = {k: {"wall_s": summarise_s(v), **({"client_cpu_s": summarise_s(cpu[k])}
                                            if k in cpu else {})}
            for k, v in sorted(walls.items(), key=lambda kv: (ENGINES.index(kv[0].split()[0]),
                                                               OTHERS.index(kv[0].split()[1])))}
    ratios: dict[str, dict[str, dict[str, Any]]] = {}
    for e in ENGINES:
        py = walls[f"{e} pyrunc"]
        p = summ[f"{e} pyrunc"]["wall_s"]["median"]
        ratios[e] = {}
        for o in OTHERS[1:]:
            other = walls[f"{e} {o}"]
            m = summ[f"{e} {o}"]["wall_s"]["median"]
            ratios[e][f"pyrunc/{o}"] = {
                "of_medians": round(p / m, 3),
                "ci90": ratio_ci(py, other),
                "paired_median": round(statistics.median(a / b for a, b in
                                                         zip(py, other, strict=True)), 3),
                "share_pyrunc_slower": round(statistics.fmean(a > b for a, b in
                                                              zip(py, other, strict=True)), 3),
                "delta_s": round(p - m, 6),
            }
    goals = {f"{e} pyrunc <= {GOAL}x runc": ratios[e]["pyrunc/runc"]["of_medians"] <= GOAL
             for e in ENGINES}
    return {"summary": summ, "wrap_probe_s": wrap, "crun_calls_per_run": crun_calls,
            "ratios": ratios, "goals": goals}


def report(result: dict[str, Any]) -> str:
    summ, ratios = result["summary"], result["ratios"]
    rows = []
    for key, d in summ.items():
        w, c = d["wall_s"], d.get("client_cpu_s")
        rows.append([key, f"{w['median']:.4f}", f"{w['p10']:.4f}", f"{w['p90']:.4f}",
                     f"{w['min']:.4f}", f"{c['median']:.4f}" if c else "-"])
    w = result["wrap_probe_s"]
    rows.append(["probe crun wrapper(/bin/true)", f"{w['median']:.4f}", f"{w['p10']:.4f}",
                 f"{w['p90']:.4f}", f"{w['min']:.4f}", "-"])
    out = [table(["engine runtime", "median s", "p10 s", "p90 s", "min s", "client cpu s"],
                 rows), ""]

    rrows = []
    for e in ENGINES:
        for name, r in ratios[e].items():
            lo, hi = r["ci90"]
            rrows.append([f"{e} {name}", f"{r['of_medians']:.3f}", f"{lo:.2f}-{hi:.2f}",
                          f"{r['paired_median']:.3f}", f"{r['delta_s'] * 1e3:+.1f}",
                          f"{r['share_pyrunc_slower'] * 100:.0f} %"])
    out += [table(["ratio", "of medians", "90% CI", "paired median", "diff ms",
                   "rounds pyrunc slower"], rrows), ""]
    out.append("crun-net = crun minus the wrapper probe's median x crun calls per run "
               f"({', '.join(f'{e} {n}' for e, n in result['crun_calls_per_run'].items())})")
    for e in ENGINES:
        k = f"{e} pyrunc <= {GOAL}x runc"
        lo, hi = ratios[e]["pyrunc/runc"]["ci90"]
        sure = "" if (hi <= GOAL) == (lo <= GOAL) else " (the 90% CI straddles the goal)"
        out.append(f"goal {k}: {'PASS' if result['goals'][k] else 'FAIL'}{sure}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 15)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("engines_bench: run as root")
    if not os.path.ismount(UNIFIED):
        raise SystemExit(f"engines_bench: {UNIFIED} is not mounted; the crun wrapper assumes "
                         "this host's hybrid layout")
    if not os.access(DOCKER, os.X_OK):
        raise SystemExit(f"engines_bench: {DOCKER} (docker.io's 20.10 client) not found")
    signal.signal(signal.SIGTERM, sigterm_exit)
    stale = stale_bytecode()
    top = short_tempdir("eb-")
    tag = os.path.basename(top).replace("_", "")
    started = time.monotonic()
    load_before = os.getloadavg()
    runtimes = []
    checked: dict[str, Any] = {}
    ctd = dk = bench = None
    problems: list[str] = []
    result: dict[str, Any] = {}
    try:
        runtimes = [
            Runtime("pyrunc", pyrunc_under_test(args.code, top), "pyrunc"),
            Runtime("runc", which("runc"), "runc2"),
            Runtime("crun", write_exec(os.path.join(top, "crun-wrap"), crun_wrapper_text()),
                    "crunw"),
        ]
        checks = {rt.name: Wrapper(os.path.join(top, f"chk-{rt.name}"), rt.path)
                  for rt in runtimes}
        archive = build_image(top)
        ctd = Containerd(os.path.join(top, "c"), tag, runtimes)
        ctd.start(archive)
        dk = Dockerd(os.path.join(top, "d"), tag, runtimes, checks)
        dk.start(archive)
        checked = preflight(ctd, dk, runtimes, checks)
        bench = Bench(top, ctd, dk, runtimes)
        total = args.warmup + args.runs
        for i in range(total):
            bench.round(i, record=i >= args.warmup)
            print(f"\rround {i + 1}/{total}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        result = analyse(bench, {e: len(checked[e]["crun"]) for e in ENGINES})
    except CommandFailed as e:
        print(f"\nengines_bench: {e}", file=sys.stderr)
        result = {}
    finally:
        for eng in (dk, ctd):
            if eng is not None:
                try:
                    problems += eng.teardown()
                except Exception as e:  # keep tearing down the rest
                    problems.append(f"teardown {type(eng).__name__}: {e!r}")
        problems += unmount_and_remove(top)
        problems += [f"cgroup left: {p}" for p in cgroup_leftovers(tag)]
        if problems:
            print("cleanup problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    if not result:
        return 1
    result["meta"] = {
        **base_meta(args, started, load_before),
        "loadavg_1m_per_round": bench.round_load if bench else [],
        "commands": {
            "ctr": " ".join(ctd.run_argv(runtimes[0], "ID")) if ctd else "",
            "docker": " ".join(dk.run_argv(runtimes[0])) if dk else "",
            "runtimes": {rt.name: rt.path for rt in runtimes},
            "crun_wrapper": crun_wrapper_text().strip().splitlines()[-1],
        },
        "versions": {
            "containerd": first_line([which("containerd"), "--version"]),
            "dockerd": first_line([which("dockerd"), "--version"]),
            "docker": first_line([DOCKER, "--version"]),
            "runc": first_line([which("runc"), "--version"]),
            "crun": first_line([which("crun"), "--version"]),
            "python": platform.python_version(),
        },
        "preflight_calls": checked,
        "git": git_state(), "stale_pyc_in_checkout": stale,
        "crun_residue_removed": {"ctr": ctd.residue if ctd else 0,
                                 "docker": dk.residue if dk else 0},
        "cleanup_problems": problems,
    }
    result["samples"] = {s.key: {"wall_s": s.wall, "client_cpu_s": s.client_cpu}
                         for s in bench.subjects} if bench else {}
    result["samples"]["probe crun wrapper(/bin/true)"] = {"wall_s": bench.wrap_s if bench else []}
    print(report(result))
    print(footer(result["meta"]))
    print(f"JSON: {save_result('engines', result, args.json)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
