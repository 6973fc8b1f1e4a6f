"""Runtime latency side by side: pyrunc, runc and crun on one busybox bundle running /bin/true.

    .venv/bin/python -m bench.runtime_bench [--runs N] [--warmup N] [--json OUT]
                                            [--code snapshot|as-is]

Per round, in an order rotated every round so drift hits every runtime alike:
  run     `X run ID` in the foreground (it reaps its init and deletes the container itself)
  cycle   `X create --pid-file P ID`, `X start ID`, waitpid(init) as the child subreaper
          (what containerd's shim does), one `X state ID` that must say "stopped", and
          `X delete ID`; each phase is timed, the cycle is their sum.
  kill    `X create ID`, then timed: `X kill ID KILL` of the created container; then
          waitpid(init) and `X delete ID` (untimed): `kill` is the one verb the cycle lacks.
The interpreter pyrunc's launcher runs, alone (`python -I -S -c pass`), is a probe in the
same rounds: the floor under every pyrunc command.
crun refuses this host's hybrid cgroup layout, so it runs through a wrapper (a private mount
namespace with the cgroup2 mount gone). The wrapper alone around /bin/true is measured in the
same rounds, and so is runc through the same wrapper, to show the wrapper's effect on runc.
See bench/README.md for what is measured, why it is fair, and the latest figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench._code import pyrunc_env, snapshot_launcher
from bench._common import (
    CommandFailed,
    Timing,
    base_meta,
    become_subreaper,
    cgroup_leftovers,
    check,
    common_args,
    first_line,
    footer,
    git_state,
    reap_strays,
    save_result,
    stale_bytecode,
    summarise,
    table,
    wait_exit,
)
from conformance.engines.bundles import default_config, make_rootfs
from conformance.engines.drivers import UNIFIED, crun_raw_check, remove_crun_residue, wrap
from conformance.engines.procs import which

PYRUNC = os.path.join(os.path.dirname(sys.executable), "pyrunc")
COMMAND_OPS = ("run", "create", "start", "state", "delete")
PHASES = ("create", "start", "wait", "state", "delete")
WRAPPED_PER_OP = {"run": 1, "create": 1, "start": 1, "state": 1, "delete": 1, "wait": 0,
                  "cycle": 4, "kill": 1}  # how many wrapped commands each measurement contains
FLOOR = "python -I -S -c pass"
# Issue 12: each per-call verb <= 1.5x runc, and the four-command cycle <= 1.1x runc.
VERB_GOAL, CYCLE_GOAL = 1.5, 1.1


@dataclass
class Subject:
    """One runtime as benchmarked: a name, its argv prefix (with --root), its environment
    (None: ours) and its samples, `op` for wall ms and `op_cpu` for CPU ms."""

    name: str
    prefix: list[str]
    root: str
    env: dict[str, str] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    wait_methods: set[str] = field(default_factory=set)

    def add(self, op: str, t: Timing | float) -> None:
        if isinstance(t, Timing):
            self.samples.setdefault(op, []).append(t.wall_ms)
            self.samples.setdefault(op + "_cpu", []).append(t.cpu_ms)
        else:
            self.samples.setdefault(op, []).append(t)


class Bench:
    def __init__(self, workdir: str, bundle: str, pyrunc_env: dict[str, str] | None,
                 pyrunc: str = PYRUNC) -> None:
        self.workdir = workdir
        self.bundle = bundle
        self.errlog = os.path.join(workdir, "stderr.log")
        self.tag = f"bn{os.getpid()}"
        self.seq = 0
        runc, crun = which("runc"), which("crun")

        def root(name: str) -> str:
            return os.path.join(workdir, "root-" + name)

        self.subjects = [
            Subject("pyrunc", [pyrunc, "--root", root("pyrunc")], root("pyrunc"), pyrunc_env),
            Subject("runc", [runc, "--root", root("runc")], root("runc")),
            Subject("crun+wrap", wrap([crun, "--root", root("crun")]), root("crun")),
            Subject("runc+wrap", wrap([runc, "--root", root("runcw")]), root("runcw")),
        ]
        # Probes: the bare cost of spawning a process, and of the wrapper around /bin/true.
        self.probes = {"spawn(/bin/true)": ["/bin/true"], "wrap(/bin/true)": wrap(["/bin/true"]),
                       FLOOR: [*interpreter(pyrunc), "-c", "pass"]}
        self.probe = Subject("probes", [], "")

    def new_id(self) -> str:
        self.seq += 1
        return f"{self.tag}-{self.seq}"

    def run_once(self, s: Subject, record: bool) -> None:
        cid = self.new_id()
        t = check([*s.prefix, "run", "--bundle", self.bundle, cid], self.errlog, env=s.env)
        if record:
            s.add("run", t)

    def cycle_once(self, s: Subject, record: bool) -> None:
        cid = self.new_id()
        pidfile = os.path.join(self.workdir, f"{cid}.pid")
        out = os.path.join(self.workdir, "state.out")
        t: dict[str, Timing | float] = {}
        t["create"] = check([*s.prefix, "create", "--bundle", self.bundle, "--pid-file",
                             pidfile, cid], self.errlog, env=s.env)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.unlink(pidfile)
        t["start"] = check([*s.prefix, "start", cid], self.errlog, env=s.env)
        t0 = time.perf_counter_ns()
        s.wait_methods.add(wait_exit(pid))
        t["wait"] = (time.perf_counter_ns() - t0) / 1e6
        t["state"] = check([*s.prefix, "state", cid], self.errlog, out, env=s.env)
        with open(out) as f:
            status = json.load(f)["status"]
        if status != "stopped":
            raise CommandFailed(f"{s.name} state {cid}: {status!r} after the init exited")
        t["delete"] = check([*s.prefix, "delete", cid], self.errlog, env=s.env)
        if record:
            for k, v in t.items():
                s.add(k, v)
            s.add("cycle", sum(v.wall_ms if isinstance(v, Timing) else v for v in t.values()))

    def kill_once(self, s: Subject, record: bool) -> None:
        cid = self.new_id()
        pidfile = os.path.join(self.workdir, f"{cid}.pid")
        check([*s.prefix, "create", "--bundle", self.bundle, "--pid-file", pidfile, cid],
              self.errlog, env=s.env)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.unlink(pidfile)
        t = check([*s.prefix, "kill", cid, "KILL"], self.errlog, env=s.env)
        s.wait_methods.add(wait_exit(pid))
        check([*s.prefix, "delete", cid], self.errlog, env=s.env)
        if record:
            s.add("kill", t)

    def probe_once(self, name: str, record: bool) -> None:
        t = check(self.probes[name], self.errlog)
        if record:
            self.probe.add(name, t)

    def round(self, index: int, record: bool) -> None:
        jobs: list[tuple[str, Any]] = [("probe", p) for p in self.probes]
        jobs += [(op, s) for op in ("run", "cycle", "kill") for s in self.subjects]
        k = index % len(jobs)
        for op, target in jobs[k:] + jobs[:k]:
            if op == "probe":
                self.probe_once(target, record)
            elif op == "run":
                self.run_once(target, record)
            elif op == "kill":
                self.kill_once(target, record)
            else:
                self.cycle_once(target, record)
            reap_strays()

    def cleanup(self) -> list[str]:
        """Force-delete anything left under each private root, and remove what crun leaves
        under the hidden cgroup2 mount point; report what resisted."""
        left = []
        for s in self.subjects:
            if not os.path.isdir(s.root):
                continue
            for cid in os.listdir(s.root):
                try:
                    check([*s.prefix, "delete", "--force", cid], self.errlog, env=s.env)
                except CommandFailed as e:
                    left.append(f"{s.name}: {e}")
        reap_strays()
        left += remove_crun_residue(self.tag)
        return left + [f"cgroup left: {p}" for p in cgroup_leftovers(self.tag)]


def interpreter(launcher: str) -> list[str]:
    """The interpreter and flags of a `#!` launcher (the floor probe runs just that)."""
    with open(launcher, "rb") as f:
        first = f.readline().decode(errors="replace")
    return first[2:].split() if first.startswith("#!") else [sys.executable]


def make_bundle(path: str) -> str:
    make_rootfs(os.path.join(path, "rootfs"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(default_config(["/bin/true"]), f, indent=1)
    return path


def analyse(bench: Bench) -> dict[str, Any]:
    """Summaries per subject and op, wrapper-subtracted rows, and the pyrunc ratios."""
    summ: dict[str, dict[str, Any]] = {}
    for s in bench.subjects:
        summ[s.name] = {op: summarise(v) for op, v in s.samples.items()}
    probes = {k: summarise(v) for k, v in bench.probe.samples.items()}
    wrap_ms = probes["wrap(/bin/true)"]["median"]
    wrap_cpu = probes["wrap(/bin/true)_cpu"]["median"]
    for name in ("crun+wrap", "runc+wrap"):
        net = {}
        for op, d in summ[name].items():
            base = op.removesuffix("_cpu")
            n = WRAPPED_PER_OP[base] * (wrap_cpu if op.endswith("_cpu") else wrap_ms)
            net[op] = {k: (round(v - n, 3) if k != "n" else v) for k, v in d.items()}
        summ[name.replace("+wrap", "-net")] = net
    ratios: dict[str, dict[str, float]] = {}
    for op in ("run", "cycle", *PHASES, "kill"):
        p = summ["pyrunc"][op]["median"]
        ratios[op] = {f"pyrunc/{o}": round(p / summ[o][op]["median"], 3)
                      for o in ("runc", "crun-net", "crun+wrap")
                      if summ[o][op]["median"] > 0}
    goals = {f"{op} <= {VERB_GOAL}x runc": ratios[op]["pyrunc/runc"] <= VERB_GOAL
             for op in ("start", "state", "kill", "delete")}
    goals[f"cycle <= {CYCLE_GOAL}x runc"] = ratios["cycle"]["pyrunc/runc"] <= CYCLE_GOAL
    goals["run <= 0.8x runc (earlier goal)"] = ratios["run"]["pyrunc/runc"] <= 0.8
    return {"summary": summ, "probes": probes, "ratios": ratios, "goals": goals}


def report(result: dict[str, Any]) -> str:
    summ, probes, ratios = result["summary"], result["probes"], result["ratios"]
    order = ["pyrunc", "runc", "crun-net", "crun+wrap", "runc+wrap", "runc-net"]
    rows = []

    def row(label: str, d: dict[str, float], cpu: dict[str, float] | None) -> list[str]:
        return [label, f"{d['median']:.2f}", f"{d['p10']:.2f}", f"{d['p90']:.2f}",
                f"{cpu['median']:.2f}" if cpu else "-"]

    for op in ("run", "cycle", *PHASES, "kill"):
        for name in order:
            if op in summ[name]:
                rows.append(row(f"{op:<6} {name}", summ[name][op], summ[name].get(op + "_cpu")))
    for name in ("spawn(/bin/true)", "wrap(/bin/true)", FLOOR):
        rows.append(row(f"probe  {name}", probes[name], probes.get(name + "_cpu")))
    out = [table(["op     runtime", "median ms", "p10 ms", "p90 ms", "cpu ms"], rows), ""]
    keys = ("pyrunc/runc", "pyrunc/crun-net", "pyrunc/crun+wrap")
    rrows = [[op, *(f"{ratios[op][k]:.2f}" if k in ratios[op] else "-" for k in keys)]
             for op in ratios]
    out += [table(["ratio of medians", *keys], rrows), ""]
    floor = probes[FLOOR]["median"]
    out += [f"pyrunc above the interpreter floor ({floor:.2f} ms), median ms: "
            + ", ".join(f"{op} {summ['pyrunc'][op]['median'] - floor:.2f}"
                        for op in ("start", "state", "kill", "delete"))
            + "; runc's whole command: " + ", ".join(
                f"{op} {summ['runc'][op]['median']:.2f}"
                for op in ("start", "state", "kill", "delete")), ""]
    out += [f"goal {k}: {'PASS' if v else 'FAIL'}" for k, v in result["goals"].items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 30)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("runtime_bench: run as root")
    if not os.path.ismount(UNIFIED):
        raise SystemExit(f"runtime_bench: {UNIFIED} is not mounted; the crun wrapper assumes "
                         "this host's hybrid layout")
    stale = stale_bytecode()
    if stale:
        print(f"note: {len(stale)} runtime modules have stale or missing .pyc in the checkout "
              f"({', '.join(stale[:4])}{', ...' if len(stale) > 4 else ''}); with "
              "PYTHONDONTWRITEBYTECODE set, an installed pyrunc recompiles them on every call "
              "(`--code as-is` measures that)", file=sys.stderr)
    become_subreaper()
    workdir = tempfile.mkdtemp(prefix="runtime-bench-")
    bench = None
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        env = pyrunc_env(args.code, workdir)
        launcher = PYRUNC if env is None else snapshot_launcher(workdir)
        bundle = make_bundle(os.path.join(workdir, "bundle"))
        crun_raw = crun_raw_check(bundle, workdir)
        bench = Bench(workdir, bundle, env, launcher)
        warmup = args.warmup
        total = warmup + args.runs
        for i in range(total):
            bench.round(i, record=i >= warmup)
            print(f"\rround {i + 1}/{total}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        result = analyse(bench)
    finally:
        left = bench.cleanup() if bench else []
        shutil.rmtree(workdir, ignore_errors=True)
        if left:
            print("cleanup problems:\n  " + "\n  ".join(left), file=sys.stderr)
    result["meta"] = {
        **base_meta(args, started, load_before, warmup=warmup),
        "python": platform.python_version(), "runc": first_line([which("runc"), "--version"]),
        "crun": first_line([which("crun"), "--version"]), "git": git_state(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "stale_pyc_in_checkout": stale, "crun_unwrapped": crun_raw,
        "pyrunc_launcher": PYRUNC if launcher == PYRUNC else "copy of it on the snapshot",
        "wrapper": " ".join(wrap(["..."])),
        "wait_methods": {s.name: sorted(s.wait_methods) for s in bench.subjects},
        "cleanup_problems": left,
    }
    result["samples"] = {s.name: s.samples for s in bench.subjects}
    result["samples"]["probes"] = bench.probe.samples
    print(report(result))
    print(footer(result["meta"]))
    print(f"crun without the wrapper: {crun_raw}")
    print(f"JSON: {save_result('runtime', result, args.json)}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
