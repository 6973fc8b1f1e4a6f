"""The lifecycle benchmark with a resources-heavy config: pyrunc vs runc (and crun) side by side.

    .venv/bin/python -m bench.resources_bench [--runs N] [--warmup N] [--no-crun]
                                              [--baseline] [--json OUT] [--code snapshot|as-is]

The config is what an engine hands a runtime for an ordinary container: memory (limit,
reservation, swap), cpu (shares, quota, period, cpus), pids limit, Docker's default
capability set in bounding/effective/permitted, and Docker's default seccomp profile for
those capabilities (conformance/seccomp_profiles.py), on the busybox bundle running /bin/true.

Per round, in an order rotated every round so drift hits every runtime alike:
  run     `X run ID` in the foreground
  cycle   `X create --pid-file P ID`, `X start ID`, waitpid(init) as the child subreaper,
          `X state ID` (must say "stopped"), `X delete ID`; the cycle is the sum of phases.
crun needs this host's cgroup2 mount hidden (a private mount namespace, see ARCHITECTURE.md); the
wrapper alone around /bin/true is timed in the same rounds and subtracted for "crun-net".
`--baseline` also times runc's default config (no resources, no seccomp) in the same rounds,
to show what the heavy config costs each runtime. Before timing, each runtime runs the
config once and the applied limits and seccomp mode are checked, so all do the same work.
Goal: pyrunc/runc ratio of medians <= 1.0 for run and for cycle.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench._code import pyrunc_env
from bench._common import (
    CommandFailed,
    Timing,
    base_meta,
    become_subreaper,
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
PHASES = ("create", "start", "wait", "state", "delete")
MiB = 1 << 20
# Docker's default capabilities (moby oci/caps/defaults.go).
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
RESOURCES = {
    "memory": {"limit": 256 * MiB, "reservation": 128 * MiB, "swap": 512 * MiB},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
    "pids": {"limit": 100},
}
# What the check before timing reads back from each runtime's cgroup (mount/file -> value).
EXPECTED_FILES = {"memory/memory.limit_in_bytes": str(256 * MiB),
                  "memory/memory.soft_limit_in_bytes": str(128 * MiB),
                  "cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "50000",
                  "pids/pids.max": "100"}


def heavy_config(args: list[str]) -> dict[str, Any]:
    from conformance.seccomp_profiles import docker_default
    cfg = default_config(args)
    proc = cfg["process"]
    proc["capabilities"] = {s: list(DOCKER_CAPS) for s in ("bounding", "effective",
                                                             "permitted")}
    proc["noNewPrivileges"] = False  # Docker's default; the filter loads with CAP_SYS_ADMIN
    cfg["linux"]["resources"].update(copy.deepcopy(RESOURCES))
    cfg["linux"]["seccomp"] = docker_default(DOCKER_CAPS)
    return cfg


def make_bundles(workdir: str, baseline: bool) -> dict[str, str]:
    """config name -> bundle path; the bundles share one rootfs copy."""
    rootfs = make_rootfs(os.path.join(workdir, "rootfs"))
    configs = {"resources": heavy_config(["/bin/true"])}
    if baseline:
        configs["plain"] = default_config(["/bin/true"])
    out = {}
    for name, cfg in configs.items():
        path = os.path.join(workdir, "bundle-" + name)
        os.makedirs(path)
        cfg["root"]["path"] = rootfs
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        out[name] = path
    return out


@dataclass
class Subject:
    """A runtime as benchmarked: argv prefix (with its own --root), environment, samples
    keyed "config/op" (wall ms) and "config/op_cpu" (CPU ms)."""

    name: str
    prefix: list[str]
    root: str
    env: dict[str, str] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, t: Timing | float) -> None:
        if isinstance(t, Timing):
            self.samples.setdefault(key, []).append(t.wall_ms)
            self.samples.setdefault(key + "_cpu", []).append(t.cpu_ms)
        else:
            self.samples.setdefault(key, []).append(t)


class Runner:
    def __init__(self, workdir: str, bundles: dict[str, str], env: dict[str, str] | None,
                 crun: bool) -> None:
        self.workdir = workdir
        self.bundles = bundles
        self.errlog = os.path.join(workdir, "stderr.log")
        self.tag = f"rb{os.getpid()}"
        self.seq = 0

        def root(name: str) -> str:
            return os.path.join(workdir, "root-" + name)

        self.subjects = [Subject("pyrunc", [PYRUNC, "--root", root("pyrunc")], root("pyrunc"),
                                 env),
                         Subject("runc", [which("runc"), "--root", root("runc")], root("runc"))]
        self.probes = {"spawn(/bin/true)": ["/bin/true"]}
        if crun:
            self.subjects.append(Subject("crun+wrap", wrap([which("crun"), "--root",
                                                            root("crun")]), root("crun")))
            self.probes["wrap(/bin/true)"] = wrap(["/bin/true"])
        self.probe = Subject("probes", [], "")

    def new_id(self) -> str:
        self.seq += 1
        return f"{self.tag}-{self.seq}"

    def run_once(self, s: Subject, config: str, record: bool) -> None:
        t = check([*s.prefix, "run", "--bundle", self.bundles[config], self.new_id()],
                  self.errlog, env=s.env)
        if record:
            s.add(f"{config}/run", t)

    def cycle_once(self, s: Subject, config: str, record: bool) -> None:
        cid = self.new_id()
        pidfile = os.path.join(self.workdir, f"{cid}.pid")
        out = os.path.join(self.workdir, "state.out")
        t: dict[str, Timing | float] = {}
        t["create"] = check([*s.prefix, "create", "--bundle", self.bundles[config],
                             "--pid-file", pidfile, cid], self.errlog, env=s.env)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.unlink(pidfile)
        t["start"] = check([*s.prefix, "start", cid], self.errlog, env=s.env)
        t0 = time.perf_counter_ns()
        wait_exit(pid)
        t["wait"] = (time.perf_counter_ns() - t0) / 1e6
        t["state"] = check([*s.prefix, "state", cid], self.errlog, out, env=s.env)
        with open(out) as f:
            status = json.load(f)["status"]
        if status != "stopped":
            raise CommandFailed(f"{s.name} state {cid}: {status!r} after the init exited")
        t["delete"] = check([*s.prefix, "delete", cid], self.errlog, env=s.env)
        if record:
            for k, v in t.items():
                s.add(f"{config}/{k}", v)
            s.add(f"{config}/cycle",
                  sum(v.wall_ms if isinstance(v, Timing) else v for v in t.values()))

    def round(self, index: int, record: bool) -> None:
        jobs: list[tuple[str, str, Any]] = [("probe", "", p) for p in self.probes]
        jobs += [(op, config, s) for config in self.bundles for op in ("run", "cycle")
                 for s in self.subjects]
        k = index % len(jobs)
        for op, config, target in jobs[k:] + jobs[:k]:
            if op == "probe":
                t = check(self.probes[target], self.errlog)
                if record:
                    self.probe.add(target, t)
            elif op == "run":
                self.run_once(target, config, record)
            else:
                self.cycle_once(target, config, record)
            reap_strays()

    def verify(self) -> dict[str, Any]:
        """Each runtime once with the heavy config: the cgroup files of its container (read
        from the host through /proc/<init>/cgroup while it waits in `created`) and the
        seccomp mode its process runs under. Raises if any runtime skipped something."""
        found: dict[str, Any] = {}
        cfg_path = os.path.join(self.bundles["resources"], "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        probe_bundle = os.path.join(self.workdir, "bundle-verify")
        os.makedirs(probe_bundle)
        cfg["process"]["args"] = ["grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status"]
        with open(os.path.join(probe_bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        for s in self.subjects:
            cid = self.new_id()
            pidfile = os.path.join(self.workdir, f"{cid}.pid")
            out = os.path.join(self.workdir, f"{cid}.out")
            check([*s.prefix, "create", "--bundle", probe_bundle, "--pid-file", pidfile, cid],
                  self.errlog, out, env=s.env)
            with open(pidfile) as f:
                pid = int(f.read().strip())
            files = {k: read_cgroup_file(pid, k) for k in EXPECTED_FILES}
            check([*s.prefix, "start", cid], self.errlog, env=s.env)
            wait_exit(pid)
            check([*s.prefix, "delete", cid], self.errlog, env=s.env)
            with open(out) as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines()
                              if ":\t" in line)
            found[s.name] = {"files": files, "seccomp": status.get("Seccomp"),
                             "capeff": status.get("CapEff")}
            wrong = {k: v for k, v in files.items() if v != EXPECTED_FILES[k]}
            if wrong or status.get("Seccomp") != "2":
                raise CommandFailed(f"{s.name} did not apply the config: {found[s.name]}")
        capeffs = {v["capeff"] for v in found.values()}
        if len(capeffs) != 1:
            raise CommandFailed(f"the runtimes gave different capabilities: {found}")
        return found

    def cleanup(self) -> list[str]:
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
        if any(s.name == "crun+wrap" for s in self.subjects):
            left += remove_crun_residue(self.tag)
        return left + [f"cgroup left: {p}" for p in _cgroups_named(self.tag)]


def read_cgroup_file(pid: int, spec: str) -> str:
    """'memory/memory.limit_in_bytes' of `pid`'s cgroup, read from the host: the hierarchy
    mounted at /sys/fs/cgroup/memory, at the path /proc/<pid>/cgroup gives for it."""
    mount, name = spec.split("/", 1)
    mountpoint = os.path.join("/sys/fs/cgroup", mount)
    with open("/proc/self/mountinfo") as f:
        opts = next(line.split(" - ")[1].split()[2] for line in f
                    if line.split()[4] == mountpoint)
    ctrls = set(opts.split(",")) - {"rw", "ro"}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if names and set(names.split(",")) <= ctrls:
                with open(os.path.join(mountpoint + path, name)) as g:
                    return g.read().strip()
    raise CommandFailed(f"pid {pid} has no cgroup in {mountpoint}")


def _cgroups_named(prefix: str, base: str = "/sys/fs/cgroup") -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk(base):
        found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(prefix)]
        if dirpath.count("/") > 8:
            dirnames[:] = []
    return found


def analyse(runner: Runner) -> dict[str, Any]:
    summ: dict[str, dict[str, Any]] = {s.name: {k: summarise(v) for k, v in s.samples.items()}
                                       for s in runner.subjects}
    probes = {k: summarise(v) for k, v in runner.probe.samples.items()}
    if "crun+wrap" in summ:
        wrap_ms = probes["wrap(/bin/true)"]["median"]
        wrap_cpu = probes["wrap(/bin/true)_cpu"]["median"]
        net = {}
        for key, d in summ["crun+wrap"].items():
            op = key.split("/", 1)[1].removesuffix("_cpu")
            count = {"cycle": 4, "wait": 0}.get(op, 1)  # wrapped commands in the figure
            n = count * (wrap_cpu if key.endswith("_cpu") else wrap_ms)
            net[key] = {k: (round(v - n, 3) if k != "n" else v) for k, v in d.items()}
        summ["crun-net"] = net
    ratios: dict[str, dict[str, float]] = {}
    for config in runner.bundles:
        for op in ("run", "cycle", *PHASES):
            key = f"{config}/{op}"
            p = summ["pyrunc"][key]["median"]
            ratios[key] = {f"pyrunc/{o}": round(p / summ[o][key]["median"], 3)
                           for o in ("runc", "crun-net") if o in summ
                           and summ[o][key]["median"] > 0}
    goals = {f"resources {op} <= 1.0x runc": ratios[f"resources/{op}"]["pyrunc/runc"] <= 1.0
             for op in ("run", "cycle")}
    return {"summary": summ, "probes": probes, "ratios": ratios, "goals": goals}


def report(result: dict[str, Any], configs: list[str]) -> str:
    summ, probes, ratios = result["summary"], result["probes"], result["ratios"]
    order = [n for n in ("pyrunc", "runc", "crun-net", "crun+wrap") if n in summ]
    rows = []

    def row(label: str, d: dict[str, float], cpu: dict[str, float] | None) -> list[str]:
        return [label, f"{d['median']:.2f}", f"{d['p10']:.2f}", f"{d['p90']:.2f}",
                f"{cpu['median']:.2f}" if cpu else "-"]

    for config in configs:
        for op in ("run", "cycle", *PHASES):
            key = f"{config}/{op}"
            for name in order:
                if key in summ[name]:
                    rows.append(row(f"{config:<9} {op:<6} {name}", summ[name][key],
                                    summ[name].get(key + "_cpu")))
    for name in probes:
        if not name.endswith("_cpu"):
            rows.append(row(f"probe     {name}", probes[name], probes.get(name + "_cpu")))
    out = [table(["config    op     runtime", "median ms", "p10 ms", "p90 ms", "cpu ms"],
                 rows), ""]
    keys = [k for k in ("pyrunc/runc", "pyrunc/crun-net") if any(k in r for r in
                                                                  ratios.values())]
    rrows = [[key, *(f"{ratios[key][k]:.2f}" if k in ratios[key] else "-" for k in keys)]
             for key in ratios]
    out += [table(["ratio of medians", *keys], rrows), ""]
    out += [f"goal {k}: {'PASS' if v else 'FAIL'}" for k, v in result["goals"].items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 20)
    ap.add_argument("--no-crun", action="store_true", help="leave crun out")
    ap.add_argument("--baseline", action="store_true",
                    help="also time the plain default config in the same rounds")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("resources_bench: run as root")
    crun = not args.no_crun and shutil.which("crun") is not None and os.path.ismount(UNIFIED)
    stale = stale_bytecode()
    if stale:
        print(f"note: {len(stale)} runtime modules have stale or missing .pyc in the checkout; "
              "`--code as-is` would recompile them on every call", file=sys.stderr)
    become_subreaper()
    workdir = tempfile.mkdtemp(prefix="resources-bench-")
    runner = None
    load_before = os.getloadavg()
    started = time.monotonic()
    crun_raw = "not measured"
    try:
        env = pyrunc_env(args.code, workdir)
        bundles = make_bundles(workdir, args.baseline)
        if crun:
            crun_raw = crun_raw_check(bundles["resources"], workdir)
        runner = Runner(workdir, bundles, env, crun)
        verified = runner.verify()
        total = args.warmup + args.runs
        for i in range(total):
            runner.round(i, record=i >= args.warmup)
            print(f"\rround {i + 1}/{total}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        result = analyse(runner)
    finally:
        left = runner.cleanup() if runner else []
        shutil.rmtree(workdir, ignore_errors=True)
        if left:
            print("cleanup problems:\n  " + "\n  ".join(left), file=sys.stderr)
    result["meta"] = {
        **base_meta(args, started, load_before),
        "python": platform.python_version(),
        "runc": first_line([which("runc"), "--version"]),
        "crun": first_line([which("crun"), "--version"]) if crun else None,
        "crun_unwrapped": crun_raw, "git": git_state(), "stale_pyc_in_checkout": stale,
        "resources": RESOURCES, "capabilities": DOCKER_CAPS,
        "seccomp": "conformance.seccomp_profiles.docker_default(DOCKER_CAPS)",
        "verified": verified, "cleanup_problems": left,
    }
    result["samples"] = {s.name: s.samples for s in runner.subjects}
    result["samples"]["probes"] = runner.probe.samples
    print(report(result, list(runner.bundles)))
    print(footer(result["meta"]))
    print(f"JSON: {save_result('resources', result, args.json)}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
