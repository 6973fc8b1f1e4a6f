"""Helpers shared by the benchmarks: timed spawns, child-subreaper, percentiles, tables, and
facts about the checkout (bytecode freshness, git state) recorded next to the figures.

Commands are started with os.posix_spawn (vfork + exec: no Python fork cost) and reaped with
wait4 on their own pid, so the harness adds the same small constant to every runtime and we
also get the command's CPU time. stdin and stdout go to /dev/null or a file, never to a pipe:
a created container keeps create's stdio open, so reading such a pipe to EOF would wait for
the container.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import random
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence

PR_SET_CHILD_SUBREAPER = 36
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CommandFailed(RuntimeError):
    """A timed command exited non-zero; the message carries its stderr."""


def become_subreaper() -> None:
    """Adopt orphaned descendants, as containerd's shim does, so we can reap container inits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def reap_strays() -> int:
    """Reap any zombie children we adopted but did not wait for; return how many."""
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


class Timing(float):
    """A command's wall-clock ms (the float value itself, so callers may treat it as a plain
    number), with .wall_ms, .cpu_ms (user + system of the command and the children it
    waited for) and .rc."""

    def __new__(cls, wall_ms: float, cpu_ms: float, rc: int) -> Timing:
        self = super().__new__(cls, wall_ms)
        self.wall_ms = wall_ms
        self.cpu_ms = cpu_ms
        self.rc = rc
        return self


def timed(argv: Sequence[str], errlog: str, stdout: str = os.devnull,
          env: Mapping[str, str] | None = None) -> Timing:
    """Run argv to completion; stderr is appended to errlog."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
    ]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], list(argv), os.environ if env is None else env,
                         file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    return Timing((t1 - t0) / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3,
                  os.waitstatus_to_exitcode(status))


def check(argv: Sequence[str], errlog: str, stdout: str = os.devnull,
          env: Mapping[str, str] | None = None) -> Timing:
    """timed(), raising CommandFailed with the tail of errlog when the command fails."""
    size = os.path.getsize(errlog) if os.path.exists(errlog) else 0
    t = timed(argv, errlog, stdout, env)
    if t.rc != 0:
        with open(errlog, "rb") as f:
            f.seek(size)
            tail = f.read().decode(errors="replace").strip()
        raise CommandFailed(f"{' '.join(argv)} exited {t.rc}: {tail[-2000:]}")
    return t


def wait_exit(pid: int, timeout: float = 10.0) -> str:
    """Wait for a container init to exit: waitpid when it is our (adopted) child, else poll
    /proc until it is gone or a zombie. Returns the method used."""
    try:
        os.waitpid(pid, 0)
        return "waitpid"
    except ChildProcessError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            return "poll"
        if raw[raw.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            return "poll"
        time.sleep(0.0002)
    raise TimeoutError(f"pid {pid} still running after {timeout}s")


class Summary(dict):
    """summarise()'s result: a dict whose keys also read as attributes (s.median)."""

    def __getattr__(self, name: str) -> float:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, float]:
        return dict(self)


def summarise(samples: Sequence[float]) -> Summary:
    """n, median, p10, p90 (inclusive method), min and mean of the samples."""
    if len(samples) == 1:
        lo = hi = samples[0]
    else:
        deciles = statistics.quantiles(samples, n=10, method="inclusive")
        lo, hi = deciles[0], deciles[-1]
    return Summary(n=len(samples), median=round(statistics.median(samples), 3),
                   p10=round(lo, 3), p90=round(hi, 3), min=round(min(samples), 3),
                   mean=round(statistics.fmean(samples), 3))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cols = list(zip(headers, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in cols]
    lines = []
    for i, r in enumerate([headers, *rows]):
        cells = [c.ljust(w) if j == 0 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stale_bytecode(pkg: str = "runtime") -> list[str]:
    """Sources under pkg whose __pycache__ .pyc is missing or older than the source. With
    PYTHONDONTWRITEBYTECODE set, each of these is recompiled on every call."""
    stale = []
    for dirpath, _, files in os.walk(os.path.join(REPO, pkg)):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            src = os.path.join(dirpath, name)
            try:
                with open(importlib.util.cache_from_source(src), "rb") as f:
                    header = f.read(16)
            except FileNotFoundError:
                stale.append(os.path.relpath(src, REPO))
                continue
            st = os.stat(src)
            mtime = int.from_bytes(header[8:12], "little")
            size = int.from_bytes(header[12:16], "little")
            if mtime != int(st.st_mtime) & 0xFFFFFFFF or size != st.st_size & 0xFFFFFFFF:
                stale.append(os.path.relpath(src, REPO))
    return sorted(stale)


def first_line(argv: Sequence[str]) -> str:
    """The first line a command prints (for versions), or '?'."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    out = (p.stdout or p.stderr).strip()
    return out.splitlines()[0] if out else "?"


def git_state() -> dict[str, object]:
    """HEAD and the locally modified or untracked files under runtime/ (read-only git)."""
    def git(*args: str) -> str:
        p = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "runtime").splitlines()]
    return {"head": git("rev-parse", "HEAD"), "runtime_changes": dirty}


def footer(meta: Mapping[str, object]) -> str:
    """The line under a report that says when, how many rounds, the load and the code."""
    load = meta["loadavg_before"], meta["loadavg_after"]
    warmup = f" warmup={meta['warmup']}" if "warmup" in meta else ""
    took = f"  {meta['seconds']} s" if "seconds" in meta else ""
    return (f"\n{meta['date']}  runs={meta['runs']}{warmup}  code={meta['code']}  "
            f"load {load[0][0]:.2f} -> {load[1][0]:.2f}  "  # type: ignore[index]
            f"HEAD {str(meta['git']['head'])[:12]}{took}")  # type: ignore[index]


def save_result(kind: str, result: object, path: str | None = None) -> str:
    """The raw figures as JSON at `path`, default bench/results/KIND-DATE.json; its path."""
    import datetime
    import json
    out = path or os.path.join(REPO, "bench", "results", f"{kind}-"
                               + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    return out


def base_meta(args: object, started: float, load_before: tuple[float, float, float],
              **more: object) -> dict[str, object]:
    """The facts every benchmark records beside its figures: when, how many rounds, which
    code, how long, on what machine, and the load before and after."""
    import datetime
    import platform
    meta: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "runs": getattr(args, "runs", None)}
    if getattr(args, "warmup", None) is not None:
        meta["warmup"] = args.warmup  # type: ignore[attr-defined]
    meta.update({
        "code": getattr(args, "code", None), "seconds": round(time.monotonic() - started, 1),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg()})
    meta.update(more)
    return meta


def common_args(ap: object, runs: int, *, warmup: bool = True, code: str = "pyrunc") -> None:
    """--runs, --warmup, --json and --code, the options every benchmark takes."""
    add = ap.add_argument  # type: ignore[attr-defined]
    add("--runs", type=int, default=runs, help=f"measured rounds (default {runs})")
    if warmup:
        add("--warmup", type=int, default=2, help="unrecorded rounds first (default 2)")
    add("--json", default=None, help="write JSON here (default bench/results/...)")
    add("--code", choices=["snapshot", "as-is"], default="snapshot",
        help=f"{code} from a compiled copy taken now (default) or as is")


def summarise_s(samples: Sequence[float]) -> dict[str, float]:
    """summarise() in seconds, computed in ms so its rounding keeps microseconds."""
    return {k: v if k == "n" else round(v / 1e3, 6)
            for k, v in summarise([x * 1e3 for x in samples]).items()}


def ratio_ci(num: Sequence[float], den: Sequence[float], n: int = 2000,
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


def sigterm_exit(signum: int, frame: object) -> None:
    """A SIGTERM handler that unwinds like SystemExit, so a benchmark's finally: cleans up."""
    raise SystemExit(128 + signum)


def cgroup_leftovers(prefix: str, base: str = "/sys/fs/cgroup") -> list[str]:
    """cgroup directories whose name starts with `prefix`, a few levels deep."""
    found = []
    for dirpath, dirnames, _ in os.walk(base):
        found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(prefix)]
        if dirpath.count("/") > 6:
            dirnames[:] = []
    return found
