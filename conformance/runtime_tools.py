"""Drive opencontainers/runtime-tools' validation programs (TAP) against runc and pyrunc.

A validation program is run the way upstream's `make localvalidation` runs it: RUNTIME names
the runtime, the working directory holds `runtimetest` and `rootfs-<GOARCH>.tar.gz`, and every
bundle goes under TMPDIR. Here RUNTIME is a wrapper adding `--root` so each run has its own
state root; the working directory, TMPDIR and root are private to the run and are cleaned up
afterwards (containers force-deleted, mounts under the directory detached, new cgroups
removed), whatever the program did.

The programs are Go, built offline with Debian's golang-go in GOPATH mode over
/usr/share/gocode (or with -mod=vendor when the source tree has vendor/), into a cache
directory keyed by the Debian package version; binaries never go into the repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig import make_rootfs

PKG = "golang-github-opencontainers-runtime-tools-dev"
GOCODE = Path("/usr/share/gocode")
IMPORT_PATH = "github.com/opencontainers/runtime-tools"
DEB_SRC = GOCODE / "src" / IMPORT_PATH
CACHE_BASE = Path(os.environ.get("RUNTIME_TOOLS_CACHE", "/var/cache/imagetool-tests"))
PROBE_SRC = Path(__file__).resolve().parent / "runtime_tools_probe" / "main.go"
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
BUILD_TIMEOUT = 600
GOCACHE: Path | None = None  # default: <cache dir>/gocache


# ---------------------------------------------------------------- locating and building


def package_version() -> str | None:
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", PKG],
                       capture_output=True, text=True)
    return (p.stdout.strip() or None) if p.returncode == 0 else None


def go_binary() -> str | None:
    return shutil.which("go") or shutil.which("go", path="/usr/lib/go/bin")


def cache_dir() -> Path:
    return CACHE_BASE / f"runtime-tools-{package_version() or 'none'}"


def _has_suite(tree: Path) -> bool:
    return (tree / "validation").is_dir() and (tree / "cmd" / "runtimetest").is_dir()


def find_source() -> tuple[Path | None, str]:
    """The runtime-tools source tree holding validation/ and cmd/runtimetest, or why none."""
    candidates = []
    if os.environ.get("RUNTIME_TOOLS_SRC"):
        candidates.append(Path(os.environ["RUNTIME_TOOLS_SRC"]))
    candidates += [DEB_SRC, cache_dir() / "src"]
    for tree in candidates:
        if _has_suite(tree):
            return tree, ""
    version = package_version()
    if version is None:
        return None, f"{PKG} is not installed (scripts/install.sh installs it)"
    shipped = sorted(p.name for p in DEB_SRC.iterdir() if p.is_dir()) if DEB_SRC.is_dir() else []
    return None, (
        f"runtime-tools' validation/ and cmd/runtimetest are not on this host: Debian's {PKG} "
        f"{version} ships only the library packages ({' '.join(shipped)}) under {DEB_SRC}, "
        "and the source package's orig tarball (which also drops vendor/, while "
        "github.com/mndrix/tap-go is not packaged in Debian) is not on the reachable mirror; "
        "looked in " + ", ".join(str(c) for c in candidates) + ". Set RUNTIME_TOOLS_SRC to a "
        "runtime-tools source tree with vendor/ (or unpack one at the last path) to run it")


def validation_programs(src: Path) -> list[str]:
    """Program names: validation/NAME/NAME.go (current layout) or validation/NAME.go."""
    names = set()
    vdir = src / "validation"
    for entry in vdir.iterdir():
        if entry.name == "util":  # the programs' shared package, as upstream's Makefile skips
            continue
        if entry.is_dir() and (entry / f"{entry.name}.go").is_file():
            names.add(entry.name)
        elif entry.suffix == ".go" and not entry.name.endswith("_test.go"):
            names.add(entry.stem)
    return sorted(names)


def _program_source(src: Path, name: str) -> str:
    nested = Path("validation") / name / f"{name}.go"
    return f"./{nested}" if (src / nested).is_file() else f"./validation/{name}.go"


def _go_env(gopath: str, cache: Path, modules: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GOPATH=gopath, GOCACHE=str(GOCACHE or cache / "gocache"), GOPROXY="off", GOFLAGS="",
               GO111MODULE="off", CGO_ENABLED="0", HOME=str(cache))
    if modules:
        env.update(GO111MODULE="on", GOFLAGS="-mod=vendor")
    return env


def _go_build(env: dict[str, str], cwd: Path, out: Path, target: str) -> str | None:
    go = go_binary()
    assert go is not None
    p = subprocess.run([go, "build", "-o", str(out), target], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    return None if p.returncode == 0 else f"go build {target}: {p.stderr.strip()}"


class _Lock:
    """An exclusive flock on PATH while building into the shared cache."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def __enter__(self) -> _Lock:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@dataclass
class Built:
    """Where the built suite is, and what building cost (0 when it came from the cache)."""

    bindir: Path
    programs: dict[str, Path]
    runtimetest: Path | None
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)  # program -> go build error


def build_probe() -> Built:
    """The self-test TAP program, from Debian's runtime-tools library packages only."""
    if go_binary() is None:
        raise RuntimeError("golang-go is not installed (scripts/install.sh installs it)")
    digest = hashlib.sha256(PROBE_SRC.read_bytes()).hexdigest()[:16]
    cache = cache_dir()
    out = cache / f"probe-{digest}"
    start = time.monotonic()
    with _Lock(cache / ".lock"):
        if not out.exists():
            tmp = out.with_name(out.name + ".tmp")
            err = _go_build(_go_env(str(GOCODE), cache, False), PROBE_SRC.parent, tmp,
                            f"./{PROBE_SRC.name}")
            if err:
                raise RuntimeError(err)
            tmp.rename(out)
            for stale in cache.glob("probe-*"):
                if stale != out:
                    stale.unlink()
    return Built(cache, {"probe": out}, None, time.monotonic() - start)


def build_suite(src: Path) -> Built:
    """runtimetest and every validation program, built once per package version and tree."""
    if go_binary() is None:
        raise RuntimeError("golang-go is not installed (scripts/install.sh installs it)")
    cache = cache_dir()
    tree_key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
    bindir = cache / f"suite-{tree_key}"
    names = validation_programs(src)
    start = time.monotonic()
    with _Lock(cache / ".lock"):
        stamp = bindir / "built.json"
        if stamp.is_file():
            done = json.loads(stamp.read_text())
            return Built(bindir, {n: bindir / f"{n}.t" for n in done["programs"]},
                         bindir / "runtimetest", 0.0, done["errors"])
        bindir.mkdir(parents=True, exist_ok=True)
        modules = (src / "vendor" / "modules.txt").is_file()
        if modules:
            env, cwd = _go_env(str(cache / "gopath"), cache, True), src
        else:
            # GOPATH mode: this tree shadows Debian's library-only copy, the rest is Debian's.
            gopath = cache / "gopath"
            link = gopath / "src" / IMPORT_PATH
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(src.resolve())
            env, cwd = _go_env(f"{gopath}:{GOCODE}", cache, False), link
        err = _go_build(env, cwd, bindir / "runtimetest", "./cmd/runtimetest")
        if err:
            raise RuntimeError(err)

        def one(name: str) -> tuple[str, str | None]:
            return name, _go_build(env, cwd, bindir / f"{name}.t", _program_source(src, name))

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = dict(pool.map(one, names))
        errors = {n: e for n, e in results.items() if e}
        programs = [n for n in names if n not in errors]
        stamp.write_text(json.dumps({"programs": programs, "errors": errors}))
    return Built(bindir, {n: bindir / f"{n}.t" for n in programs}, bindir / "runtimetest",
                 time.monotonic() - start, errors)


def make_rootfs_tarball(dest_dir: Path) -> Path:
    """rootfs-<GOARCH>.tar.gz as the suite expects it: a busybox rootfs at the top level
    (the programs unpack it straight into the bundle and use root path ".")."""
    tarball = dest_dir / f"rootfs-{GOARCH}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="rt-rootfs-") as tmp:
        make_rootfs(tmp)
        subprocess.run(["tar", "-czf", str(tarball), "--numeric-owner", "-C", tmp, "."],
                       check=True)
    return tarball


# ---------------------------------------------------------------- TAP


@dataclass(frozen=True)
class TapResult:
    number: int
    ok: bool
    description: str
    directive: str  # "", "skip" or "todo"
    line: str

    @property
    def passed(self) -> bool:
        return self.ok and self.directive != "skip"

    @property
    def failed(self) -> bool:
        return not self.ok and self.directive != "todo"


_TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
_DIRECTIVE = re.compile(r"\s+#\s*(skip|todo)\b.*$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(\d+)")


def parse_tap(text: str) -> tuple[list[TapResult], int | None]:
    """Test lines and the plan of a TAP stream (YAML blocks and diagnostics are ignored)."""
    results: list[TapResult] = []
    plan = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if m := _PLAN.match(line):
            plan = int(m.group(1))
            continue
        m = _TAP_LINE.match(line)
        if not m:
            continue
        rest = m.group(3)
        directive = ""
        if d := _DIRECTIVE.search(" " + rest):
            directive = d.group(1).lower()
            rest = (" " + rest)[: d.start()].strip()
        number = int(m.group(2)) if m.group(2) else len(results) + 1
        results.append(TapResult(number, m.group(1) == "ok", rest, directive, line))
    return results, plan


_VOLATILE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+")


def assertion_keys(results: list[TapResult]) -> list[tuple[str, int]]:
    """A key per assertion that survives random names: the description with numbers and
    UUIDs blanked, plus its occurrence count among equal descriptions."""
    seen: Counter[str] = Counter()
    keys = []
    for r in results:
        norm = _VOLATILE.sub("#", r.description)
        keys.append((norm, seen[norm]))
        seen[norm] += 1
    return keys


# ---------------------------------------------------------------- running


@dataclass
class ProgramRun:
    runtime: str
    program: str
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    leftovers: list[str]

    @property
    def results(self) -> list[TapResult]:
        results, plan = parse_tap(self.stdout)
        # The run itself is an assertion: a crash, a timeout or a broken plan fails it.
        complete = self.returncode == 0 and plan is not None and plan == len(results)
        why = (f"exit {self.returncode}" if self.returncode is not None else "timeout") + (
            f", plan {plan}, {len(results)} results")
        results.append(TapResult(0, complete, "<program completes with its plan>", "",
                                 f"{'ok' if complete else 'not ok'} - program: {why}"))
        return results


def _cgroup_dirs() -> set[str]:
    found = set()
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found.add(dirpath)
        if dirpath.count("/") > 12:
            dirnames[:] = []
    return found


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def cleanup(binary: str, root: Path, workdir: Path, cgroups_before: set[str]) -> list[str]:
    """Force-delete every container under ROOT, detach mounts under WORKDIR, remove new
    cgroups; return what could not be removed."""
    left = []
    if root.is_dir():
        for cid in sorted(os.listdir(root)):
            try:
                p = subprocess.run([binary, "--root", str(root), "delete", "--force", cid],
                                   capture_output=True, text=True, timeout=30)
                err = p.stderr.strip()
            except subprocess.TimeoutExpired:
                err = "delete --force timed out"
            if (root / cid).exists():
                left.append(f"container {cid}: {err}")
    for point in sorted(_mounts_under(str(workdir)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    if mounts := _mounts_under(str(workdir)):
        left.append(f"mounts: {mounts}")
    for path in sorted(_cgroup_dirs() - cgroups_before, key=len, reverse=True):
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)  # its last task may still be exiting
        else:
            left.append(f"cgroup {path}")
    if workdir.exists() and not _mounts_under(str(workdir)):
        shutil.rmtree(workdir, ignore_errors=True)
    return left


def run_program(name: str, program: Path, runtime: str, binary: str, rootfs_tarball: Path,
                runtimetest: Path | None, timeout: float) -> ProgramRun:
    """One validation program against one runtime, in its own directory and --root."""
    workdir = Path(tempfile.mkdtemp(prefix=f"rt-{runtime}-{name}-"))
    os.chmod(workdir, 0o755)
    root, tmp = workdir / "root", workdir / "tmp"
    tmp.mkdir()
    wrapper = workdir / f"{runtime}-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {binary} --root {root} "$@"\n')
    wrapper.chmod(0o755)
    os.symlink(rootfs_tarball, workdir / rootfs_tarball.name)
    if runtimetest is not None:
        shutil.copy2(runtimetest, workdir / "runtimetest")
    env = dict(os.environ, RUNTIME=str(wrapper), TMPDIR=str(tmp))
    cgroups_before = _cgroup_dirs()
    start = time.monotonic()
    proc = subprocess.Popen([str(program)], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            rc = None
        finally:
            # Hooks or helpers the program started in its session must not outlive it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        seconds = time.monotonic() - start
        left = cleanup(binary, root, workdir, cgroups_before)
    return ProgramRun(runtime, name, rc, out, err, seconds, left)


@dataclass
class Comparison:
    pyrunc_only: list[str]  # TAP lines runc passed and pyrunc did not
    runc_only: list[str]  # TAP lines pyrunc passed and runc did not
    passed: dict[str, int]  # runtime -> assertions passed
    total: dict[str, int]


def compare(reference: ProgramRun, candidate: ProgramRun) -> Comparison:
    ref, cand = reference.results, candidate.results
    ref_by = dict(zip(assertion_keys(ref), ref, strict=True))
    cand_by = dict(zip(assertion_keys(cand), cand, strict=True))
    pyrunc_only, runc_only = [], []
    for key, r in ref_by.items():
        c = cand_by.get(key)
        if r.passed and (c is None or c.failed):
            pyrunc_only.append(c.line if c else f"(missing) {r.line}")
    for key, c in cand_by.items():
        r = ref_by.get(key)
        if c.passed and (r is None or r.failed):
            runc_only.append(r.line if r else f"(missing) {c.line}")
    return Comparison(pyrunc_only, runc_only,
                      {reference.runtime: sum(r.passed for r in ref),
                       candidate.runtime: sum(c.passed for c in cand)},
                      {reference.runtime: len(ref), candidate.runtime: len(cand)})
