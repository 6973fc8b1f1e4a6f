"""Registry pull and push side by side: imagetool against `skopeo copy`, on one ~300 MB,
five-layer image served by a local docker-registry.

    .venv/bin/python -m bench.registry_bench [--runs N] [--json OUT] [--no-mount]
        [--no-nodiff] [--ablate N] [--profile] [--py-spy BIN] [--tmp DIR]

The image is built here without the internet (bench/_registry.py): three gzip layers of this
machine's /usr/lib, /usr/share and /usr/bin+sbin (sorted walks up to a byte budget), one of
~100 MB of random bytes, one of an "app" (random blob + generated text files); ~300 MB of
blobs, ~560 MB of tar. skopeo pushes it once to a registry started for the run (127.0.0.1,
free port, temp storage, access log off); then one untimed pull per tool warms the page cache
and fills the push sources (imagetool's store and skopeo's OCI layout: the same blob bytes).
Caches stay warm for both tools: the page cache is not dropped. Dirty pages are written back
(os.sync, untimed) before every sample, so no sample pays for an earlier one's writes.

Measured in rounds, the tools' order rotating per round:
  pull          `imagetool --root FRESH pull -q REF` vs
                `skopeo copy -q --src-tls-verify=false docker://REF oci:FRESH:latest`, and
                (skip with --no-nodiff) `python -c "...pull(..., verify_diff_ids=False)"`:
                the library without its decompress-and-hash pass over every layer, which
                skopeo doesn't do either (it checks only the compressed digests)
  push          to a FRESH registry instance (empty storage, new port) started for each
                sample, so nothing is skipped by HEAD and nothing can be mounted; the registry's
                blob bytes are checked after each push. `imagetool --root STORE push -q NAME
                HOST/bench:latest` vs `skopeo copy -q --dest-tls-verify=false oci:LAYOUT:latest
                docker://HOST/bench:latest`
  push-mount    (skip with --no-mount) to a new repository on the registry that already holds
                the image: imagetool mounts from the image's own repository (same registry),
                skopeo from the locations its blob-info cache recorded during the pulls. Not
                comparable to a real upload; shown because that is what a second push costs.
Starting/stopping registries and removing destinations are not timed. Each sample records
wall and CPU seconds of the command, the CPU the serving registry spent meanwhile, and the
load average; results go to bench/results/registry-<time>.json.

--ablate N times N rounds of in-process pulls and pushes with one library parameter changed
(verify_diff_ids, workers, chunk_size), plus the CLI's fixed cost (interpreter + imports).
--profile then runs one pull and one push in-process with a cProfile per worker thread
(aggregated) and writes .pstats files next to the JSON; --py-spy BIN also records both
commands with py-spy (sampling, all threads, idle included) as collapsed stacks.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import functools
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench._common import check, first_line, git_state, summarise, table
from bench._registry import LocalRegistry, build_layout, tree_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGETOOL = os.path.join(os.path.dirname(sys.executable), "imagetool")
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
TOOLS = ("imagetool", "skopeo")
# Not the CLI: the same pull through the library with the diff_id pass off (the CLI has no
# switch for it), as a command with the same interpreter start and imports, to show what the
# pull costs without decompressing every layer. Pull rounds only; the ratio is vs skopeo.
NODIFF = "imagetool-nodiff"
LIB_PULL = ("import sys; from imagetool.pull import pull; from imagetool.store import Store; "
            "pull(Store(sys.argv[1]), sys.argv[2], progress=False, verify_diff_ids=False)")


class Bench:
    """Everything one run owns: work dir, registries (stopped by pid in close())."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.errlog = os.path.join(work, "errors.log")
        self.layout = os.path.join(work, "layout")
        self.store = os.path.join(work, "store")  # imagetool's push source
        self.oci = os.path.join(work, "skopeo-oci")  # skopeo's push source
        self.registries: list[LocalRegistry] = []
        self.main: LocalRegistry | None = None
        self.image: dict[str, Any] = {}

    def registry(self) -> LocalRegistry:
        reg = LocalRegistry(self.work)
        self.registries.append(reg)
        return reg.start()

    def drop(self, reg: LocalRegistry) -> None:
        reg.stop()
        self.registries.remove(reg)

    def close(self) -> None:
        for reg in list(self.registries):
            try:
                reg.stop()
            except Exception as e:  # keep stopping the others
                print(f"registry_bench: stopping {reg.host}: {e}", file=sys.stderr)
        self.registries.clear()

    @property
    def ref(self) -> str:
        assert self.main is not None
        return f"{self.main.host}/bench:latest"

    # -- commands ------------------------------------------------------------------------------
    def pull_argv(self, tool: str, dest: str) -> list[str]:
        if tool == "imagetool":
            return [IMAGETOOL, "--root", dest, "pull", "-q", self.ref]
        if tool == NODIFF:
            return [sys.executable, "-c", LIB_PULL, dest, self.ref]
        return [SKOPEO, "copy", "-q", "--src-tls-verify=false", f"docker://{self.ref}",
                f"oci:{dest}:latest"]

    def push_argv(self, tool: str, target: str) -> list[str]:
        if tool == "imagetool":
            return [IMAGETOOL, "--root", self.store, "push", "-q", self.ref, target]
        return [SKOPEO, "copy", "-q", "--dest-tls-verify=false", f"oci:{self.oci}:latest",
                f"docker://{target}"]

    def setup(self) -> None:
        t0 = time.monotonic()
        self.image = build_layout(self.layout)
        self.image["build_s"] = round(time.monotonic() - t0, 1)
        self.main = self.registry()
        check([SKOPEO, "copy", "-q", "--dest-tls-verify=false", f"oci:{self.layout}:latest",
               f"docker://{self.ref}"], self.errlog)
        shutil.rmtree(self.layout)  # only the registry's copy is used from here on
        for tool, dest in (("imagetool", self.store), ("skopeo", self.oci)):
            t = check(self.pull_argv(tool, dest), self.errlog)
            self._check_pulled(dest)
            print(f"warm-up pull {tool}: {t.wall_ms / 1e3:.2f} s", file=sys.stderr)

    def _check_pulled(self, dest: str) -> None:
        got = tree_bytes(os.path.join(dest, "blobs"))
        if got < self.image["blob_bytes"]:
            raise RuntimeError(f"{dest}: {got} bytes of blobs, expected "
                               f"{self.image['blob_bytes']}")

    # -- samples -------------------------------------------------------------------------------
    def sample(self, kind: str, tool: str, rnd: int) -> dict[str, float]:
        """One timed command; also the CPU the serving registry spent meanwhile. Dirty pages
        are written back first (untimed), so no sample pays for an earlier one's writes."""
        assert self.main is not None
        os.sync()
        load = os.getloadavg()[0]
        reg = self.main
        if kind == "pull":
            dest = os.path.join(self.work, f"pull-{tool}")
            shutil.rmtree(dest, ignore_errors=True)
            try:
                cpu0 = reg.cpu_s()
                t = check(self.pull_argv(tool, dest), self.errlog)
                reg_cpu = reg.cpu_s() - cpu0
                self._check_pulled(dest)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
        elif kind == "push":
            reg = self.registry()
            try:
                cpu0 = reg.cpu_s()
                t = check(self.push_argv(tool, f"{reg.host}/bench:latest"), self.errlog)
                reg_cpu = reg.cpu_s() - cpu0
                got = reg.blob_bytes()
                if got < self.image["blob_bytes"] or not reg.has_manifest("bench", "latest"):
                    raise RuntimeError(f"push by {tool}: registry holds {got} bytes of blobs, "
                                       f"expected {self.image['blob_bytes']}")
            finally:
                self.drop(reg)
        else:  # push-mount
            repo = f"mount-{tool}-{rnd}"
            cpu0 = reg.cpu_s()
            t = check(self.push_argv(tool, f"{reg.host}/{repo}:latest"), self.errlog)
            reg_cpu = reg.cpu_s() - cpu0
            if not reg.has_manifest(repo, "latest"):
                raise RuntimeError(f"push-mount by {tool}: no manifest in {repo}")
        return {"wall_s": t.wall_ms / 1e3, "cpu_s": t.cpu_ms / 1e3,
                "registry_cpu_s": round(reg_cpu, 3), "load1": load}


def tools_for(kind: str, nodiff: bool) -> tuple[str, ...]:
    return (*TOOLS, NODIFF) if kind == "pull" and nodiff else TOOLS


def run_rounds(bench: Bench, runs: int, kinds: list[str],
               nodiff: bool) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {
        f"{k}/{t}": [] for k in kinds for t in tools_for(k, nodiff)}
    for rnd in range(runs):
        for kind in kinds:
            tools = tools_for(kind, nodiff)
            for tool in tools[rnd % len(tools):] + tools[:rnd % len(tools)]:
                s = bench.sample(kind, tool, rnd)
                samples[f"{kind}/{tool}"].append(s)
                print(f"round {rnd + 1}/{runs} {kind:10} {tool:16} {s['wall_s']:6.2f} s wall "
                      f"{s['cpu_s']:6.2f} s cpu {s['registry_cpu_s']:5.2f} s registry cpu  "
                      f"load {s['load1']:.1f}", file=sys.stderr)
    return samples


def report(samples: dict[str, list[dict[str, float]]], kinds: list[str],
           blob_bytes: int) -> tuple[dict[str, Any], str]:
    summary: dict[str, Any] = {}
    for key, rows in samples.items():
        summary[key] = {k: summarise([r[k] for r in rows])
                        for k in ("wall_s", "cpu_s", "registry_cpu_s", "load1")}
    ratios: dict[str, dict[str, float]] = {}
    lines = []
    for kind in kinds:
        sk = summary[f"{kind}/skopeo"]
        for key in [k for k in summary if k.startswith(f"{kind}/")]:
            tool = key.split("/", 1)[1]
            s = summary[key]
            w = s["wall_s"]
            ratio = ""
            if tool != "skopeo":
                name = kind if tool == "imagetool" else f"{kind} ({tool})"
                ratios[name] = {
                    "wall_median": round(w["median"] / sk["wall_s"]["median"], 3),
                    "cpu_median": round(s["cpu_s"]["median"] / sk["cpu_s"]["median"], 3)}
                ratio = f"{ratios[name]['wall_median']:.2f}x"
            lines.append([f"{kind} {tool}", f"{w['median']:.2f}", f"{w['p10']:.2f}",
                          f"{w['p90']:.2f}", f"{s['cpu_s']['median']:.2f}",
                          f"{s['registry_cpu_s']['median']:.2f}",
                          f"{blob_bytes / 1e6 / w['median']:.0f}", ratio])
    text = table(["variant", "median s", "p10 s", "p90 s", "cpu s", "reg cpu s", "MB/s",
                  "vs skopeo"], lines)
    return {"summary": summary, "ratios_over_skopeo": ratios}, text


# -- profiling ---------------------------------------------------------------------------------
class ThreadProfiles:
    """cProfile covers only the thread that enables it: wrap the functions the worker pools
    run so that each call gets its own profile, merged at the end; wall time per call too."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.calls: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*a: Any, **kw: Any) -> Any:
            p = cProfile.Profile()
            t0 = time.perf_counter()
            p.enable()
            try:
                return fn(*a, **kw)
            finally:
                p.disable()
                what = next((x["digest"] for x in a if isinstance(x, dict) and "digest" in x),
                            "?")
                with self._lock:
                    self.profiles.append(p)
                    self.calls.append((label, what[:19], time.perf_counter() - t0))
        return run


def _top(stats: pstats.Stats, key: str, n: int) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(n)
    out = buf.getvalue()
    return out[out.find("   ncalls"):] if "   ncalls" in out else out


def profile(bench: Bench, outdir: str, stamp: str) -> dict[str, Any]:
    """One in-process pull and one push (to a fresh registry) under ThreadProfiles."""
    from imagetool import pull as pull_mod
    from imagetool import push as push_mod
    from imagetool.store import Store

    result: dict[str, Any] = {}
    dest = os.path.join(bench.work, "profile-store")
    for kind in ("pull", "push"):
        tp = ThreadProfiles()
        main = cProfile.Profile()
        reg = None
        saved = (pull_mod.download, pull_mod._diff_id, push_mod.upload_blob)
        pull_mod.download = tp.wrap("download", pull_mod.download)
        pull_mod._diff_id = tp.wrap("diff_id", pull_mod._diff_id)
        push_mod.upload_blob = tp.wrap("upload", push_mod.upload_blob)
        try:
            if kind == "pull":
                shutil.rmtree(dest, ignore_errors=True)
                t0 = time.perf_counter()
                main.enable()
                pull_mod.pull(Store(dest), bench.ref, progress=False)
            else:
                reg = bench.registry()
                t0 = time.perf_counter()
                main.enable()
                push_mod.push(Store(bench.store), bench.ref, f"{reg.host}/bench:latest",
                              progress=False)
            main.disable()
            wall = time.perf_counter() - t0
        finally:
            pull_mod.download, pull_mod._diff_id, push_mod.upload_blob = saved
            if reg is not None:
                bench.drop(reg)
            shutil.rmtree(dest, ignore_errors=True)
        stats = pstats.Stats(main)
        for p in tp.profiles:
            stats.add(p)
        path = os.path.join(outdir, f"registry-{stamp}-{kind}.pstats")
        stats.dump_stats(path)
        result[kind] = {"wall_s": round(wall, 3), "pstats": os.path.relpath(path, REPO),
                        "calls": [{"fn": c[0], "blob": c[1], "wall_s": round(c[2], 3)}
                                  for c in tp.calls]}
        print(f"\n== profile: in-process {kind}, {wall:.2f} s wall ({path})")
        for label, blob, secs in tp.calls:
            print(f"  {label:8} {blob}  {secs:6.2f} s")
        print("-- top by tottime (all threads summed) --")
        print(_top(stats, "tottime", 14))
    return result


def py_spy(bench: Bench, binary: str, outdir: str, stamp: str) -> dict[str, str]:
    """Sampling profiles of the real commands (all threads, idle time included)."""
    out = {}
    dest = os.path.join(bench.work, "pyspy-store")
    for kind in ("pull", "push"):
        reg = None
        path = os.path.join(outdir, f"registry-{stamp}-{kind}.pyspy.txt")
        try:
            if kind == "pull":
                argv = bench.pull_argv("imagetool", dest)
            else:
                reg = bench.registry()
                argv = bench.push_argv("imagetool", f"{reg.host}/bench:latest")
            subprocess.run([binary, "record", "--idle", "--threads", "--rate", "200",
                            "--format", "raw", "-o", path, "--", *argv], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        finally:
            if reg is not None:
                bench.drop(reg)
            shutil.rmtree(dest, ignore_errors=True)
        out[kind] = os.path.relpath(path, REPO)
        print(f"py-spy {kind}: {path}", file=sys.stderr)
    return out


PULL_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no diff_id check": {"verify_diff_ids": False},
    "workers=6": {"workers": 6},
    "no diff_id, workers=6": {"verify_diff_ids": False, "workers": 6},
}
PUSH_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "monolithic PUT": {"chunk_size": 1 << 40},
    "64 MiB PATCH": {"chunk_size": 64 << 20},
    "workers=6": {"workers": 6},
    "monolithic, workers=6": {"chunk_size": 1 << 40, "workers": 6},
}


def ablate(bench: Bench, rounds: int) -> tuple[dict[str, Any], str]:
    """In-process pulls and pushes with one library parameter changed at a time (no code
    edits), interleaved like the main rounds; plus the CLI's fixed cost (start + imports)."""
    from imagetool.pull import pull
    from imagetool.push import push
    from imagetool.store import Store

    samples: dict[str, list[float]] = {f"pull {k}": [] for k in PULL_VARIANTS}
    samples.update({f"push {k}": [] for k in PUSH_VARIANTS})
    dest = os.path.join(bench.work, "ablate-store")
    commands = {"cli: imagetool --version": [IMAGETOOL, "--version"],
                "cli: import pull+push": [sys.executable, "-c",
                                          "import imagetool.pull, imagetool.push"]}
    samples.update({k: [] for k in commands})
    for rnd in range(rounds):
        for variants, kind in ((PULL_VARIANTS, "pull"), (PUSH_VARIANTS, "push")):
            names = list(variants)
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                reg = None
                os.sync()
                try:
                    if kind == "pull":
                        shutil.rmtree(dest, ignore_errors=True)
                        t0 = time.perf_counter()
                        pull(Store(dest), bench.ref, progress=False, **variants[name])
                    else:
                        reg = bench.registry()
                        t0 = time.perf_counter()
                        push(Store(bench.store), bench.ref, f"{reg.host}/bench:latest",
                             progress=False, **variants[name])
                    secs = time.perf_counter() - t0
                finally:
                    if reg is not None:
                        bench.drop(reg)
                    shutil.rmtree(dest, ignore_errors=True)
                samples[f"{kind} {name}"].append(secs)
                print(f"ablate {rnd + 1}/{rounds} {kind} {name:24} {secs:6.2f} s",
                      file=sys.stderr)
        for key, argv in commands.items():
            samples[key].append(check(argv, bench.errlog).wall_ms / 1e3)
    summary = {k: summarise(v) for k, v in samples.items()}
    rows = []
    for key, s in summary.items():
        base = summary.get(f"{key.split()[0]} default")
        rel = f"{s['median'] / base['median']:.2f}x" if base and ":" not in key else ""
        rows.append([key, f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}", rel])
    text = table(["in-process variant", "median s", "p10 s", "p90 s", "vs default"], rows)
    return {"samples": samples, "summary": summary}, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="results file (default bench/results/registry-<time>.json)")
    ap.add_argument("--no-mount", action="store_true", help="skip the push-mount variant")
    ap.add_argument("--no-nodiff", action="store_true",
                    help="skip the library pull without the diff_id pass")
    ap.add_argument("--profile", action="store_true", help="also profile imagetool in-process")
    ap.add_argument("--py-spy", metavar="BIN", help="also record py-spy profiles with BIN")
    ap.add_argument("--ablate", type=int, default=0, metavar="N",
                    help="also time N rounds of in-process pull/push parameter variants")
    ap.add_argument("--tmp", default=None, help="parent of the work dir (default $TMPDIR)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(REPO, "bench", "results")
    os.makedirs(outdir, exist_ok=True)
    out = args.json or os.path.join(outdir, f"registry-{stamp}.json")
    kinds = ["pull", "push"] + ([] if args.no_mount else ["push-mount"])
    work = tempfile.mkdtemp(prefix="registry-bench-", dir=args.tmp)
    bench = Bench(work)
    load_start = os.getloadavg()
    try:
        bench.setup()
        img = bench.image
        print(f"image: {len(img['layers'])} layers, {img['blob_bytes'] / 1e6:.0f} MB of blobs, "
              f"{img['tar_bytes'] / 1e6:.0f} MB of tar (built in {img['build_s']} s)",
              file=sys.stderr)
        samples = run_rounds(bench, args.runs, kinds, not args.no_nodiff)
        results, text = report(samples, kinds, img["blob_bytes"])
        doc: dict[str, Any] = {
            "bench": "registry", "time": stamp, "runs": args.runs,
            "host": {"machine": platform.machine(), "kernel": platform.release(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
            "versions": {"skopeo": first_line([SKOPEO, "--version"]),
                         "docker-registry": first_line(["docker-registry", "--version"]),
                         "imagetool": first_line([IMAGETOOL, "--version"])},
            "git": git_state(),
            "image": img,
            "method": {"caches": "warm for both (page cache not dropped; one untimed pull each)",
                       "push": "fresh registry instance with empty storage per sample",
                       "push-mount": "new repository on the registry holding the image",
                       "order": "the tools' order rotates per round",
                       "sync": "os.sync() (untimed) before every sample"},
            "commands": {"pull": {t: bench.pull_argv(t, "FRESH")
                                  for t in tools_for("pull", not args.no_nodiff)},
                         "push": {t: bench.push_argv(t, "HOST/bench:latest") for t in TOOLS}},
            "samples": samples, **results,
        }
        print(text)
        if args.ablate:
            doc["ablate"], text = ablate(bench, args.ablate)
            print("\n" + text)
        if args.profile:
            doc["profile"] = profile(bench, outdir, stamp)
        if args.py_spy:
            doc["py_spy"] = py_spy(bench, args.py_spy, outdir, stamp)
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nresults: {os.path.relpath(out, REPO)}")
        return 0
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
