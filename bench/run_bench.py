"""Container run latency: `imagetool run --rm` vs `podman run --rm` (runc) vs `docker run --rm`.

    .venv/bin/python -m bench.run_bench [--runs N] [--warmup N] [--phase-runs N] [--json OUT]
                                        [--code snapshot|as-is] [--no-bridge]

One busybox image (conformance/engines/conftest.py's fixture: busybox-static -> umoci ->
skopeo docker-archive, no internet) loaded into each tool's private store (`imagetool load`,
`podman load`, `docker load`), then per round, in an order rotated every round:

  imagetool         imagetool --root R run --rm --network none busybox true
  imagetool-bridge  imagetool --root R run --rm busybox true   (its default bridge networking,
                    on a private bridge named in R/network.json; no iptables, no ip_forward)
  podman            podman --runtime runc run --rm --network none busybox true
  docker            docker run --rm --network none busybox true    (dockerd's default runc)

podman runs with a containers.conf/storage.conf of its own (conformance/engines/test_podman.py),
dockerd with its own dirs and unix socket (bench/_engines.py's Dockerd), imagetool with
its own --root; all under one temp dir that is removed at the end. Wall seconds per command;
median, p10/p90 and the ratios imagetool/podman and imagetool/docker (goal, issue 6: below 1).

Afterwards, --phase-runs instrumented `imagetool run --rm --network none busybox true` runs
show where imagetool's time goes: the same CLI with timers wrapped around its steps (the
monitor is forked from the CLI, so the wrappers time its steps too), each phase's median ms.
See bench/README.md ("imagetool run vs podman and docker").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import time
from typing import Any

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
from bench._engines import DOCKER, Dockerd, build_image
from conformance.engines.drivers import Podman
from conformance.engines.procs import run, short_tempdir, unmount_and_remove, which

SUBJECTS = ("imagetool", "imagetool-bridge", "podman", "docker")
GOAL = 1.0  # imagetool / podman and imagetool / docker

# The instrumented imagetool: the venv launcher's work (import imagetool.cli, call main) with
# timers around its steps, each appending "pid<TAB>name<TAB>t0<TAB>t1" (CLOCK_MONOTONIC ns)
# to the file RB_EVENTS.
PROBE = r'''
import time
T_MAIN = time.monotonic_ns()
import functools, os, sys
SRC = os.environ.get("RB_SRC")
if SRC:
    sys.path.insert(0, SRC)
EV = os.environ["RB_EVENTS"]

def log(name, t0, t1):
    fd = os.open(EV, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{os.getpid()}\t{name}\t{t0}\t{t1}\n".encode())
    os.close(fd)

t = time.monotonic_ns()
from imagetool.cli import main
log("import imagetool.cli", t, time.monotonic_ns())
t = time.monotonic_ns()
import importlib
for m in ("imagetool.bundle", "imagetool.store", "imagetool.snapshots", "imagetool.convert",
          "imagetool.run.monitor", "imagetool.run.network", "imagetool.run.cli",
          "imagetool.run.verbs_run", "imagetool.run.launch", "imagetool.run.lifecycle",
          "imagetool.runspec", "imagetool.views", "runtime.create", "runtime.container"):
    try:
        importlib.import_module(m)
    except ImportError:
        pass  # a module of another version of the code
log("import lazy modules", t, time.monotonic_ns())

def find(path):
    mod, _, attr = path.partition(":")
    owner = sys.modules.get(mod)
    for part in attr.split(".")[:-1]:
        owner = getattr(owner, part, None)
    last = attr.split(".")[-1]
    return (owner, last) if owner is not None and hasattr(owner, last) else None

def wrap(name, *paths):
    """Time the first of `paths` (module:attr, attr may be Class.method) that this version
    of the code has; a phase none of them names is left out of the report."""
    found = next((f for f in map(find, paths) if f), None)
    if found is None:
        return
    obj, attr = found
    f = getattr(obj, attr)
    @functools.wraps(f)
    def w(*a, **k):
        t0 = time.monotonic_ns()
        try:
            return f(*a, **k)
        finally:
            log(name, t0, time.monotonic_ns())
    setattr(obj, attr, w)

wrap("cli: build_parser", "imagetool.cli:build_parser")
wrap("cli: cmd_run", "imagetool.run.verbs_run:cmd_run", "imagetool.run.cli:cmd_run")
wrap("cli: resolve image", "imagetool.run.launch:image", "imagetool.run.cli:_image")
wrap("cli: image_parts", "imagetool.bundle:image_parts")
wrap("cli: record new", "imagetool.run.records:Records.new")
wrap("cli: bundle.unpack", "imagetool.bundle:unpack")
wrap("unpack: snapshots.ensure", "imagetool.snapshots:Snapshots.ensure")
wrap("unpack: mount_overlay", "imagetool.snapshots:mount_overlay")
wrap("unpack: spec_from_image", "imagetool.convert:spec_from_image")
wrap("cli: edit config.json", "imagetool.runspec:build", "imagetool.run.cli:_edit_config")
wrap("cli: monitor.launch (double fork)", "imagetool.run.monitor:launch")
wrap("cli: wait for monitor status", "imagetool.run.lifecycle:read_status",
     "imagetool.run.cli:_read_status")
wrap("monitor: main", "imagetool.run.monitor:main")
wrap("monitor: network.allocate", "imagetool.run.network:allocate")
wrap("monitor: runtime create", "runtime.create:create")
wrap("monitor: network bridge side", "imagetool.run.network:setup_bridge_side")
wrap("monitor: network container side", "imagetool.run.network:setup_container_side")
wrap("monitor: runtime start", "runtime.container:Container.start")
wrap("monitor: watch (init runs, exits)", "imagetool.run.monitor:_watch")
wrap("monitor: cleanup", "imagetool.run.monitor:_cleanup")
wrap("cleanup: runtime delete", "runtime.container:Container.delete")
wrap("cleanup: network teardown", "imagetool.run.network:teardown")
wrap("cleanup: bundle.remove (umount, rmtree)", "imagetool.bundle:remove")
wrap("monitor: record update", "imagetool.run.records:Records.update")
wrap("monitor: record remove", "imagetool.run.records:Records.remove")
t = time.monotonic_ns()
rc = main()
log("main", t, time.monotonic_ns())
log("python start", T_MAIN, T_MAIN)
sys.exit(rc)
'''


class Tools:
    """The three tools' private setups and their run commands."""

    def __init__(self, top: str, imagetool: str, bridge: bool) -> None:
        self.top = top
        self.imagetool = imagetool
        self.it_root = os.path.join(top, "it")
        self.bridge_name = f"rb{secrets.token_hex(3)}" if bridge else ""
        os.makedirs(os.path.join(top, "pm"))
        self.pm = Podman(os.path.join(top, "pm"), which("podman"), which("runc"))
        self.dk = Dockerd(os.path.join(top, "d"), os.path.basename(top).replace("_", ""),
                          [], {})

    def argv(self, name: str) -> tuple[list[str], dict[str, str] | None]:
        if name == "imagetool":
            return [self.imagetool, "--root", self.it_root, "run", "--rm", "--network", "none",
                    "busybox", "true"], None
        if name == "imagetool-bridge":
            return [self.imagetool, "--root", self.it_root, "run", "--rm", "busybox",
                    "true"], None
        if name == "podman":
            return self.pm.argv("run", "--rm", "--network", "none", "busybox", "true"), \
                self.pm.env
        return [DOCKER, "run", "--rm", "--network", "none", "busybox", "true"], self.dk.env

    def start(self, archive: str) -> None:
        os.makedirs(self.it_root)
        r = run([self.imagetool, "--root", self.it_root, "load", "-q", "-i", archive],
                timeout=180)
        if r.rc != 0:
            raise SystemExit(f"run_bench: imagetool load failed:\n{r!r}")
        if self.bridge_name:
            with open(os.path.join(self.it_root, "network.json"), "w") as f:
                json.dump({"bridge": self.bridge_name,
                           "subnet": f"10.89.{secrets.randbelow(200) + 20}.0/24"}, f)
        r = self.pm.podman("load", "-i", archive, timeout=180)
        if r.rc != 0:
            raise SystemExit(f"run_bench: podman load failed:\n{r!r}")
        self.dk.start(archive)

    def subjects(self) -> list[str]:
        return [s for s in SUBJECTS if s != "imagetool-bridge" or self.bridge_name]

    def preflight(self) -> dict[str, str]:
        """Each tool once, untimed: `echo` through the same command shows the container ran."""
        seen = {}
        for name in self.subjects():
            argv, env = self.argv(name)
            argv = argv[:-1] + ["echo", f"hi-from-{name}"]
            r = run(argv, env=env, timeout=120)
            if r.rc != 0 or f"hi-from-{name}" not in r.out:
                raise SystemExit(f"run_bench: preflight {name} failed:\n{r!r}")
            seen[name] = r.out.strip()
        return seen

    def teardown(self) -> list[str]:
        problems: list[str] = []
        try:
            problems += self.dk.teardown()
        except Exception as e:  # keep tearing down the rest
            problems.append(f"teardown dockerd: {e!r}")
        if os.path.isdir(self.pm.top):
            try:
                problems += [f"podman container left: {c}" for c in self.pm.remove_all()]
                problems += self.pm.cleanup()
            except Exception as e:
                problems.append(f"teardown podman: {e!r}")
        if os.path.isdir(self.it_root):
            r = run([self.imagetool, "--root", self.it_root, "ps", "-aq"], timeout=60)
            for cid in r.out.split():
                problems.append(f"imagetool container left: {cid}")
                run([self.imagetool, "--root", self.it_root, "rm", "-f", cid], timeout=60)
        if self.bridge_name and os.path.exists(f"/sys/class/net/{self.bridge_name}"):
            run(["ip", "link", "del", self.bridge_name], timeout=30)
            if os.path.exists(f"/sys/class/net/{self.bridge_name}"):
                problems.append(f"bridge {self.bridge_name} left")
        return problems


# Phase rows in order, with their depth (a row is part of the nearest shallower row above it).
# The monitor runs in its own process, concurrently with the CLI's two waits.
PHASE_ROWS = (
    ("interpreter start (spawn -> first line)", 0),
    ("import imagetool.cli", 0),
    ("import lazy modules", 0),
    ("main", 0),
    ("cli: build_parser", 1),
    ("cli: cmd_run", 1),
    ("cli: resolve image", 2),
    ("cli: image_parts", 2),
    ("cli: record new", 2),
    ("cli: bundle.unpack", 2),
    ("unpack: snapshots.ensure", 3),
    ("unpack: mount_overlay", 3),
    ("unpack: spec_from_image", 3),
    ("cli: edit config.json", 2),
    ("cli: monitor.launch (double fork)", 2),
    ("cli: wait for monitor status", 2),
    ("cli: rest (wait for exit message)", 2),
    ("monitor: main (own process)", 2),
    ("monitor: network.allocate", 3),
    ("monitor: runtime create", 3),
    ("monitor: network bridge side", 3),
    ("monitor: network container side", 3),
    ("monitor: runtime start", 3),
    ("monitor: record update", 3),
    ("monitor: watch (init runs, exits)", 3),
    ("monitor: cleanup", 3),
    ("cleanup: runtime delete", 4),
    ("cleanup: network teardown", 4),
    ("cleanup: bundle.remove (umount, rmtree)", 4),
    ("monitor: record remove", 3),
    ("interpreter exit (main returned -> reaped)", 0),
    ("total wall", 0),
)
CLI_STEPS = [n for n, d in PHASE_ROWS if d == 2 and n.startswith("cli: ")
             and not n.startswith("cli: rest")]


def phases(tools: Tools, src: str, n: int, mode: str) -> dict[str, float]:
    """n instrumented `imagetool run --rm [--network none] busybox true` runs: per phase, the
    median ms over the runs (a phase entered several times in one run counts its sum)."""
    errlog = os.path.join(tools.top, "probe.log")
    ev = os.path.join(tools.top, "events")
    env = dict(os.environ, RB_EVENTS=ev, RB_SRC=src)
    base = tools.argv(mode)[0][1:]
    per: dict[str, list[float]] = {}
    for _ in range(n):
        if os.path.exists(ev):
            os.unlink(ev)
        t0 = time.monotonic_ns()
        check([sys.executable, "-c", PROBE, *base], errlog, env=env)
        t1 = time.monotonic_ns()
        sums: dict[str, float] = {}
        with open(ev) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
        for _pid, name, a, b in rows:
            if name == "monitor: main":
                name = "monitor: main (own process)"
            sums[name] = sums.get(name, 0.0) + (int(b) - int(a)) / 1e6
            if name == "python start":
                sums["interpreter start (spawn -> first line)"] = (int(a) - t0) / 1e6
            if name == "main":
                sums["interpreter exit (main returned -> reaped)"] = (t1 - int(b)) / 1e6
        sums["total wall"] = (t1 - t0) / 1e6
        sums["cli: rest (wait for exit message)"] = sums.get("cli: cmd_run", 0) - sum(
            sums.get(k, 0) for k in CLI_STEPS)
        for k, v in sums.items():
            per.setdefault(k, []).append(v)
    return {k: round(statistics.median(per[k]), 2) for k, _ in PHASE_ROWS if k in per}


def baselines(tools: Tools, src: str, n: int) -> dict[str, float]:
    """What the bare interpreter, the imports and the interpreter's exit cost, for scale."""
    errlog = os.path.join(tools.top, "probe.log")
    env = dict(os.environ, RB_SRC=src)
    imp = ("import os, sys\nif os.environ.get('RB_SRC'): sys.path.insert(0, "
           "os.environ['RB_SRC'])\nimport imagetool.cli, imagetool.bundle, imagetool.run.cli, "
           "imagetool.run.monitor, runtime.create, runtime.container\n")
    out = {}
    for label, code in (("python -c pass", "pass"),
                        ("python: import what run needs", imp),
                        ("python: import what run needs, then os._exit(0)", imp + "os._exit(0)")):
        ts = [check([sys.executable, "-c", code], errlog, env=env).wall_ms for _ in range(n)]
        out[label] = round(statistics.median(ts), 2)
    return out


def analyse(walls: dict[str, list[float]]) -> dict[str, Any]:
    summ = {k: summarise_s(v) for k, v in walls.items()}
    ratios: dict[str, Any] = {}
    for mine in [s for s in ("imagetool", "imagetool-bridge") if s in walls]:
        for other in ("podman", "docker"):
            a, b = walls[mine], walls[other]
            ratios[f"{mine}/{other}"] = {
                "of_medians": round(summ[mine]["median"] / summ[other]["median"], 3),
                "ci90": ratio_ci(a, b),
                "paired_median": round(statistics.median(x / y for x, y in
                                                         zip(a, b, strict=True)), 3),
                "share_imagetool_slower": round(statistics.fmean(x > y for x, y in
                                                                 zip(a, b, strict=True)), 3),
                "delta_s": round(summ[mine]["median"] - summ[other]["median"], 6),
            }
    goals = {f"imagetool < {other}": ratios[f"imagetool/{other}"]["of_medians"] < GOAL
             for other in ("podman", "docker")}
    return {"summary": summ, "ratios": ratios, "goals": goals}


def report(result: dict[str, Any]) -> str:
    rows = [[k, f"{s['median']:.4f}", f"{s['p10']:.4f}", f"{s['p90']:.4f}", f"{s['min']:.4f}"]
            for k, s in result["summary"].items()]
    out = [table(["tool", "median s", "p10 s", "p90 s", "min s"], rows), ""]
    rrows = []
    for k, r in result["ratios"].items():
        lo, hi = r["ci90"]
        rrows.append([k, f"{r['of_medians']:.3f}", f"{lo:.2f}-{hi:.2f}",
                      f"{r['paired_median']:.3f}", f"{r['delta_s'] * 1e3:+.1f}",
                      f"{r['share_imagetool_slower'] * 100:.0f} %"])
    out += [table(["ratio", "of medians", "90% CI", "paired median", "diff ms",
                   "rounds imagetool slower"], rrows), ""]
    for k, ok in result["goals"].items():
        out.append(f"goal {k}: {'PASS' if ok else 'FAIL'}")
    ph = result.get("phases")
    if ph:
        modes = list(ph["median_ms"])
        rows = [["  " * d + k, *(f"{ph['median_ms'][m][k]:.1f}" if k in ph["median_ms"][m]
                                 else "-" for m in modes)] for k, d in PHASE_ROWS]
        out += ["", f"imagetool phases, median ms of {ph['runs']} instrumented runs per mode "
                "(indented rows are part of the row above; the monitor runs in its own "
                "process, during the CLI's waits):",
                table(["phase", *modes], rows), "",
                table(["baseline", "ms"], [[k, f"{v:.1f}"] for k, v in
                                           ph["baselines_ms"].items()])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, 15, code="imagetool/runtime")
    ap.add_argument("--phase-runs", type=int, default=10,
                    help="instrumented imagetool runs for the phase breakdown (default 10)")
    ap.add_argument("--no-bridge", action="store_true",
                    help="skip the imagetool-bridge row (it creates a private bridge)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run_bench: run as root")
    if not os.access(DOCKER, os.X_OK):
        raise SystemExit(f"run_bench: {DOCKER} (docker.io's 20.10 client) not found")
    signal.signal(signal.SIGTERM, sigterm_exit)
    top = short_tempdir("rb-")
    started = time.monotonic()
    load_before = os.getloadavg()
    tools: Tools | None = None
    problems: list[str] = []
    result: dict[str, Any] = {}
    walls: dict[str, list[float]] = {}
    round_load: list[float] = []
    seen: dict[str, str] = {}
    try:
        src = snapshot_src(args.code, top)
        tools = Tools(top, imagetool_launcher(src, top), not args.no_bridge)
        archive = build_image(top)
        tools.start(archive)
        seen = tools.preflight()
        names = tools.subjects()
        walls = {n: [] for n in names}
        errlog = os.path.join(top, "clients.log")
        total = args.warmup + args.runs
        for i in range(total):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                argv_, env = tools.argv(name)
                t = check(argv_, errlog, env=env)
                if i >= args.warmup:
                    walls[name].append(t.wall_ms / 1e3)
            if i >= args.warmup:
                round_load.append(os.getloadavg()[0])
            print(f"\rround {i + 1}/{total}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        result = analyse(walls)
        if args.phase_runs > 0:
            result["phases"] = {"runs": args.phase_runs, "median_ms": {
                m: phases(tools, src, args.phase_runs, m)
                for m in names if m.startswith("imagetool")},
                "baselines_ms": baselines(tools, src, args.phase_runs)}
    except CommandFailed as e:
        print(f"\nrun_bench: {e}", file=sys.stderr)
        result = {}
    finally:
        if tools is not None:
            problems += tools.teardown()
        problems += unmount_and_remove(top)
        if problems:
            print("cleanup problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    if not result:
        return 1
    assert tools is not None
    result["meta"] = {
        **base_meta(args, started, load_before),
        "loadavg_1m_per_round": round_load,
        "commands": {n: " ".join(tools.argv(n)[0]) for n in tools.subjects()},
        "preflight_output": seen,
        "versions": {
            "podman": first_line([which("podman"), "--version"]),
            "conmon": first_line([which("conmon"), "--version"]),
            "dockerd": first_line([which("dockerd"), "--version"]),
            "docker": first_line([DOCKER, "--version"]),
            "runc": first_line([which("runc"), "--version"]),
            "python": platform.python_version(),
        },
        "git": git_state(), "cleanup_problems": problems,
    }
    result["samples"] = {k: {"wall_s": v} for k, v in walls.items()}
    print(report(result))
    print(footer(result["meta"]))
    print(f"JSON: {save_result('run', result, args.json)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
