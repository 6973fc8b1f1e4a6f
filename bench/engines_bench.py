"""Engine-level latency: `ctr run --rm` and `docker run --rm` with pyrunc, runc and crun.

    .venv/bin/python -m bench.engines_bench [--runs N] [--warmup N] [--json OUT]
                                            [--code snapshot|as-is]

Starts its own containerd 1.6 (for ctr) and its own dockerd 20.10 (which starts its own
containerd), each with private dirs and unix sockets only, loads a busybox image built here
(conformance/engines/conftest.py's fixture: busybox-static -> umoci -> skopeo, no internet),
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
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench._common import (
    REPO,
    CommandFailed,
    base_meta,
    check,
    common_args,
    first_line,
    footer,
    git_state,
    save_result,
    stale_bytecode,
    summarise,
    table,
)
from bench.runtime_bench import UNIFIED, cgroup_leftovers, which
from conformance.engines.conftest import (
    Daemon,
    busybox_archive,
    run,
    short_tempdir,
    unmount_and_remove,
)
from conformance.engines.wrapper import Wrapper

PYRUNC = os.path.join(os.path.dirname(sys.executable), "pyrunc")
DOCKER = "/usr/bin/docker"  # the docker.io 20.10 client; /usr/local/bin/docker is newer
CTR_IMAGE = "docker.io/library/busybox:latest"
DOCKER_IMAGE = "busybox"
ENGINES = ("ctr", "docker")
OTHERS = ("pyrunc", "runc", "crun", "crun-net")  # row order; crun-net is derived
GOAL = 1.05  # pyrunc / runc, per engine
CRUN_WRAPPER = """#!/bin/sh
# crun refuses this hybrid cgroup host: run it in a private mount namespace without cgroup2.
exec {unshare} -m {sh} -c '{umount} {unified} && exec {crun} "$@"' crun "$@"
"""


@dataclass
class Runtime:
    """A runtime under test: `path` is what the engines exec (--runc-binary, --add-runtime),
    `docker_name` its name in dockerd's runtime table."""

    name: str
    path: str
    docker_name: str


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


def write_exec(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def crun_wrapper_text(crun: str = "") -> str:
    """The crun wrapper; with crun="/bin/true", the probe that measures the wrapper alone."""
    return CRUN_WRAPPER.format(unshare=which("unshare"), sh=which("sh"), umount=which("umount"),
                               unified=UNIFIED, crun=crun or which("crun"))


def pyrunc_under_test(mode: str, top: str) -> str:
    """snapshot: a launcher like the installed one (same interpreter and flags) whose
    sys.path points at a compiled copy of runtime/ taken now, so one run measures one version
    of the code while others edit the checkout; as-is: the installed pyrunc."""
    if mode == "as-is":
        return PYRUNC
    with open(PYRUNC) as f:
        launcher = f.read()
    line = f"sys.path.insert(0, {REPO!r})"
    if line not in launcher and line.replace("'", '"') not in launcher:
        raise SystemExit(f"engines_bench: {PYRUNC} is not scripts/install.sh's launcher "
                         f"(no {line}); use --code as-is")
    src = os.path.join(top, "src")
    shutil.copytree(os.path.join(REPO, "runtime"), os.path.join(src, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True,
                   stdout=subprocess.DEVNULL)
    launcher = launcher.replace(line, f"sys.path.insert(0, {src!r})").replace(
        line.replace("'", '"'), f"sys.path.insert(0, {src!r})")
    return write_exec(os.path.join(top, "pyrunc"), launcher)


class _Factory:
    """Just enough of pytest's tmp_path_factory for the busybox_archive fixture."""

    def __init__(self, base: str) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name + "-", dir=self.base))


def build_image(top: str) -> str:
    """conformance/engines/conftest.py's busybox_archive fixture, called outside pytest."""
    fixture = busybox_archive._get_wrapped_function()  # type: ignore[attr-defined]
    os.makedirs(os.path.join(top, "img"))
    try:
        return fixture(_Factory(os.path.join(top, "img")))
    except pytest.fail.Exception as e:  # the fixture asserts; keep its message
        raise SystemExit(f"engines_bench: building the busybox image failed: {e}") from None
    except AssertionError as e:
        raise SystemExit(f"engines_bench: building the busybox image failed: {e}") from None


def wait_ready(d: Daemon, probe: Any, timeout: float = 90) -> None:
    try:
        d.wait_ready(probe, timeout)
    except pytest.fail.Exception as e:  # conftest reports with pytest.fail
        raise SystemExit(f"engines_bench: {e}") from None


def remove_cgroup_parent(parent: str) -> tuple[list[str], list[str]]:
    """Remove /sys/fs/cgroup/<ctrl>/<parent> (ours alone) in every hierarchy. Returns (child
    cgroups the runtimes left behind, problems)."""
    left, problems = [], []
    for ctrl in sorted(os.listdir("/sys/fs/cgroup")):
        path = os.path.join("/sys/fs/cgroup", ctrl, parent)
        if os.path.islink(os.path.join("/sys/fs/cgroup", ctrl)) or not os.path.isdir(path):
            continue
        for dirpath, dirnames, _ in os.walk(path, topdown=False):
            for d in dirnames:
                left.append(os.path.join(dirpath, d))
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError as e:
                    problems.append(f"{os.path.join(dirpath, d)}: {e}")
        try:
            os.rmdir(path)
        except OSError as e:
            problems.append(f"{path}: {e}")
    return left, problems


def remove_hidden_unified(parents: list[str]) -> tuple[int, list[str]]:
    """crun, wrapped, writes <unified>/<parent>/<id>/cgroup.procs as plain files on the
    /sys/fs/cgroup tmpfs, hidden under the host's cgroup2 mount. Remove our parents there from
    a private mount namespace. Returns (how many container dirs were there, problems)."""
    names = " ".join(f"'{p}'" for p in parents)
    script = (f'umount {UNIFIED} && cd {UNIFIED} && n=0 && for p in {names}; do '
              'if [ -d "$p" ]; then n=$((n + $(ls -A "$p" | wc -l))); rm -rf -- "$p"; fi; '
              'done && echo "$n" && for p in ' + names + '; do [ -e "$p" ] && echo "left $p"; '
              'done; true')
    p = subprocess.run([which("unshare"), "-m", which("sh"), "-c", script],
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.split()
    if p.returncode != 0 or not lines or not lines[0].isdigit() or "left" in lines:
        return 0, [f"crun residue under hidden {UNIFIED}: {(p.stdout + p.stderr).strip()}"]
    return int(lines[0]), []


class Containerd:
    """containerd for ctr: one namespace per runtime, so the shim's runtime root
    (/run/containerd/runc/<ns>, shared by every containerd on the host) and the cgroup parent
    (/<ns>) are ours alone and per runtime."""

    def __init__(self, top: str, tag: str, runtimes: list[Runtime]) -> None:
        self.top = top
        self.sock = os.path.join(top, "containerd.sock")
        self.ctr = which("ctr")
        self.tag = tag
        self.ns = {rt.name: f"{tag}-{rt.name}" for rt in runtimes}
        self.runtimes = {rt.name: rt for rt in runtimes}
        self.daemon: Daemon | None = None
        self.residue = 0

    def start(self, archive: str) -> None:
        os.makedirs(self.top)
        cfg = os.path.join(self.top, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{self.top}/root"
state = "{self.top}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.top}/opt"
""")
        self.daemon = Daemon("containerd", [which("containerd"), "--config", cfg],
                             os.path.join(self.top, "containerd.log"))
        wait_ready(self.daemon, lambda: os.path.exists(self.sock)
                   and run(self.argv("default", "version"), timeout=10).rc == 0)
        for ns in self.ns.values():
            r = run(self.argv(ns, "images", "import", archive), timeout=180)
            if r.rc != 0:
                raise SystemExit(f"engines_bench: ctr images import failed:\n{r!r}")

    def argv(self, ns: str, *args: str) -> list[str]:
        return [self.ctr, "-a", self.sock, "-n", ns, *args]

    def run_argv(self, rt: Runtime, cid: str) -> list[str]:
        return self.argv(self.ns[rt.name], "run", "--rm", "--runc-binary", rt.path, CTR_IMAGE,
                         cid, "true")

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.daemon and self.daemon.proc.poll() is None:
            for ns in self.ns.values():
                r = run(self.argv(ns, "task", "ls", "-q"), timeout=30)
                for cid in r.out.split():
                    problems.append(f"ctr task left in {ns}: {cid}")
                    run(self.argv(ns, "task", "kill", "-a", "-s", "SIGKILL", cid), timeout=30)
                    time.sleep(0.5)
                    run(self.argv(ns, "task", "delete", "-f", cid), timeout=30)
                r = run(self.argv(ns, "container", "ls", "-q"), timeout=30)
                for cid in r.out.split():
                    problems.append(f"ctr container left in {ns}: {cid}")
                    run(self.argv(ns, "container", "delete", cid), timeout=30)
        if self.daemon:
            self.daemon.stop()
        for name, ns in self.ns.items():
            root = f"/run/containerd/runc/{ns}"
            if os.path.isdir(root):
                for cid in os.listdir(root):
                    problems.append(f"{name} state left in {root}: {cid}")
                    run([self.runtimes[name].path, "--root", root, "delete", "--force", cid],
                        timeout=30)
                try:
                    os.rmdir(root)
                except OSError as e:
                    problems.append(f"{root}: {e}")
            left, probs = remove_cgroup_parent(ns)
            problems += [f"cgroup left by {name} (removed): {p}" for p in left] + probs
        self.residue, probs = remove_hidden_unified(list(self.ns.values()))
        return problems + probs


class Dockerd:
    """dockerd with one --add-runtime per runtime and a cgroup parent of our own."""

    def __init__(self, top: str, tag: str, runtimes: list[Runtime],
                 checks: dict[str, Wrapper]) -> None:
        self.top = top
        self.checks = checks
        self.sock = os.path.join(top, "docker.sock")
        self.cgroup_parent = f"{tag}-docker"
        self.runtimes = runtimes
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=os.path.join(top, "client"))
        self.daemon: Daemon | None = None
        self.residue = 0

    def start(self, archive: str) -> None:
        os.makedirs(self.top)
        cfg = os.path.join(self.top, "daemon.json")
        with open(cfg, "w") as f:
            f.write("{}\n")
        argv = [which("dockerd"), "--config-file", cfg,
                "--data-root", os.path.join(self.top, "data"),
                "--exec-root", os.path.join(self.top, "exec"),
                "--pidfile", os.path.join(self.top, "docker.pid"),
                "-H", f"unix://{self.sock}", "--cgroup-parent", f"/{self.cgroup_parent}",
                "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--userland-proxy=false"]
        for rt in self.runtimes:
            argv += ["--add-runtime", f"{rt.docker_name}={rt.path}"]
        for name, w in self.checks.items():
            argv += ["--add-runtime", f"{name}-chk={w.path}"]
        self.daemon = Daemon("dockerd", argv, os.path.join(self.top, "dockerd.log"))
        wait_ready(self.daemon, lambda: os.path.exists(self.sock)
                   and self.docker("version", timeout=10).rc == 0)
        r = self.docker("load", "-i", archive, timeout=180)
        if r.rc != 0:
            raise SystemExit(f"engines_bench: docker load failed:\n{r!r}")

    def docker(self, *args: str, timeout: float = 60):
        return run([DOCKER, *args], env=self.env, timeout=timeout)

    def run_argv(self, rt: Runtime, runtime_name: str | None = None) -> list[str]:
        return [DOCKER, "run", "--rm", "--network", "none", "--runtime",
                runtime_name or rt.docker_name, DOCKER_IMAGE, "true"]

    def _stop_own_containerd(self) -> None:
        """dockerd stops the containerd it started; if it did not, stop that one by the pid
        it recorded, after checking the process is ours (its command line names our dir)."""
        try:
            with open(os.path.join(self.top, "exec", "containerd", "containerd.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if self.top.encode() not in f.read():
                    return
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.daemon and self.daemon.proc.poll() is None:
            r = self.docker("ps", "-aq", "--no-trunc")
            for cid in r.out.split():
                problems.append(f"docker container left: {cid}")
                self.docker("rm", "-f", cid, timeout=60)
        if self.daemon:
            self.daemon.stop()
            self._stop_own_containerd()
        # dockerd 20.10 gives every runtime the same root, <exec-root>/runtime-runc/moby; a
        # container left there (only after a failure) is force-deleted by whichever of the
        # runtimes succeeds.
        moby = os.path.join(self.top, "exec", "runtime-runc", "moby")
        if os.path.isdir(moby):
            for cid in os.listdir(moby):
                problems.append(f"runtime state left in {moby}: {cid}")
                for rt in self.runtimes:
                    if os.path.exists(os.path.join(moby, cid)):
                        run([rt.path, "--root", moby, "delete", "--force", cid], timeout=30)
        left, probs = remove_cgroup_parent(self.cgroup_parent)
        # dockerd's BuildKit keeps an empty <parent>/buildkit cgroup of its own: not a leak
        problems += [f"cgroup left (removed): {p}" for p in left
                     if os.path.basename(p) != "buildkit"] + probs
        self.residue, probs = remove_hidden_unified([self.cgroup_parent])
        return problems + probs


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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


def summarise_s(samples: list[float]) -> dict[str, float]:
    """summarise() in seconds, computed in ms so its rounding keeps microseconds."""
    return {k: v if k == "n" else round(v / 1e3, 6)
            for k, v in summarise([x * 1e3 for x in samples]).items()}


def ratio_ci(num: list[float], den: list[float], n: int = 2000,
             seed: int = 4) -> tuple[float, float]:
    """A 90 % bootstrap interval of median(num)/median(den), resampling whole rounds (the
    samples are paired by round), with a fixed seed so a result file is reproducible."""
    rng = random.Random(seed)
    k = len(num)
    ratios = []
    for _ in range(n):
        idx = [rng.randrange(k) for _ in range(k)]
        ratios.append(statistics.median(num[i] for i in idx) /
                      statistics.median(den[i] for i in idx))
    q = statistics.quantiles(ratios, n=20, method="inclusive")
    return round(q[0], 3), round(q[-1], 3)


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


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


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
    signal.signal(signal.SIGTERM, _sigterm)
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
