"""opencontainers/runtime-tools' validation suite, runc versus pyrunc.

Every validation program runs once under runc (the reference) and once under pyrunc, each
with its own --root, working directory and TMPDIR (conformance/runtime_tools.py). The test of
a program fails when pyrunc fails an assertion runc passes; assertions only runc fails are
reported, not failures. Programs this host cannot run are skipped with the reason, programs
pyrunc is known to fail are xfail(strict=True) with the reason.

The suite's source must be on the host (see `find_source`); Debian's package ships only the
runtime-tools libraries, so without it the per-program tests skip with that reason. The
`probe` case always runs: a TAP program of ours built from those Debian libraries and driven
through the same harness, so the build, the layout and the cleanup are tested here.
"""

from __future__ import annotations

import os

import pytest

from conformance import runtime_tools as rt
from tests.rig import PYRUNC, RUNC

TIMEOUT = float(os.environ.get("RUNTIME_TOOLS_TIMEOUT", "90"))  # per program and runtime

# Programs that cannot work on this host, and why (hybrid cgroup v1 layout, missing hardware).
SKIP: dict[str, str] = {}
# Programs where pyrunc fails assertions runc passes for a reason too big to fix here.
XFAIL: dict[str, str] = {}

SRC, SRC_REASON = rt.find_source()
PROGRAMS = rt.validation_programs(SRC) if SRC else []
SUMMARY: dict[str, str] = {}


def _params() -> list:
    if not PROGRAMS:
        return [pytest.param("upstream-suite", marks=pytest.mark.skip(reason=SRC_REASON))]
    params = []
    for name in PROGRAMS:
        marks = []
        if name in SKIP:
            marks.append(pytest.mark.skip(reason=SKIP[name]))
        if name in XFAIL:
            marks.append(pytest.mark.xfail(reason=XFAIL[name], strict=True))
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    if SUMMARY:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line("")
            tr.write_line("runtime-tools validation, assertions passed (runc | pyrunc):")
            for name, line in sorted(SUMMARY.items()):
                tr.write_line(f"  {name}: {line}")


@pytest.fixture(scope="module")
def rootfs_tarball(tmp_path_factory):
    if not RUNC:
        pytest.skip("runc is not installed (apt-get install runc)")
    d = tmp_path_factory.mktemp("runtime-tools-rootfs")
    os.chmod(d, 0o755)
    return rt.make_rootfs_tarball(d)


@pytest.fixture(scope="module")
def suite() -> rt.Built:
    assert SRC is not None
    try:
        return rt.build_suite(SRC)
    except (RuntimeError, OSError) as e:
        pytest.skip(f"runtime-tools validation suite does not build offline: {e}")


def _differential(name: str, program, runtimetest, tarball) -> dict[str, rt.ProgramRun]:
    runs = {n: rt.run_program(name, program, n, binary, tarball, runtimetest, TIMEOUT)
            for n, binary in (("runc", RUNC), ("pyrunc", PYRUNC))}
    cmp = rt.compare(runs["runc"], runs["pyrunc"])
    SUMMARY[name] = (f"{cmp.passed['runc']}/{cmp.total['runc']} | "
                     f"{cmp.passed['pyrunc']}/{cmp.total['pyrunc']}"
                     + (f"; runc-only failures: {len(cmp.runc_only)}" if cmp.runc_only else ""))
    if cmp.runc_only:
        print(f"{name}: runc fails, pyrunc passes:\n  " + "\n  ".join(cmp.runc_only))
    left = {n: r.leftovers for n, r in runs.items() if r.leftovers}
    assert not left, f"left behind: {left}"
    assert not cmp.pyrunc_only, (
        f"{name}: pyrunc fails what runc passes:\n  " + "\n  ".join(cmp.pyrunc_only)
        + f"\npyrunc stderr:\n{runs['pyrunc'].stderr[-3000:]}")
    return runs


@pytest.mark.peer
@pytest.mark.parametrize("name", _params())
def test_validation_program(name, suite, rootfs_tarball):
    if name in suite.errors:
        pytest.skip(f"{name} does not build: {suite.errors[name]}")
    _differential(name, suite.programs[name], suite.runtimetest, rootfs_tarball)


@pytest.mark.peer
def test_probe(rootfs_tarball):
    """Our TAP probe through the same harness: both runtimes pass all of it."""
    try:
        built = rt.build_probe()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"the probe must build offline from Debian's runtime-tools: {e}")
    runs = _differential("probe", built.programs["probe"], None, rootfs_tarball)
    for run in runs.values():
        failed = [r.line for r in run.results if r.failed]
        # runc 1.1.5's `spec` (and pyrunc's, which follows it) lists ambient capabilities
        # that are not inheritable; runtime-tools' CheckProcess rejects that.
        assert failed == ["not ok 6 - spec: validator accepts process"], (run.runtime, failed)
        assert len(run.results) == 21, run.stdout


# ---------------------------------------------------------------- the harness itself

TAP = """TAP version 13
ok 1 - has expected hostname
  ---
  {"actual": "x", "expected": "x"}
  ...
not ok 2 - rlimit 1024 applied
ok 3 # SKIP linux.gidMappings not set
not ok 4 - mount /target348456609 exists # TODO propagation
ok - unnumbered
1..5
"""


def test_parse_tap():
    results, plan = rt.parse_tap(TAP)
    assert plan == 5
    assert [(r.number, r.ok, r.directive) for r in results] == [
        (1, True, ""), (2, False, ""), (3, True, "skip"), (4, False, "todo"), (5, True, "")]
    assert results[0].description == "has expected hostname"
    assert results[3].description == "mount /target348456609 exists"
    assert [r.passed for r in results] == [True, False, False, False, True]
    assert [r.failed for r in results] == [False, True, False, False, False]


def _run(runtime: str, stdout: str, rc: int | None = 0) -> rt.ProgramRun:
    return rt.ProgramRun(runtime, "x", rc, stdout, "", 0.0, [])


def test_compare_keys_survive_random_names():
    runc = _run("runc", "ok 1 - /tmp/a123 exists\nok 2 - b\nnot ok 3 - c\n1..3\n")
    pyrunc = _run("pyrunc", "ok 1 - /tmp/a987 exists\nnot ok 2 - b\nok 3 - c\n1..3\n")
    cmp = rt.compare(runc, pyrunc)
    assert cmp.pyrunc_only == ["not ok 2 - b"]
    assert cmp.runc_only == ["not ok 3 - c"]
    assert cmp.passed == {"runc": 3, "pyrunc": 3} and cmp.total == {"runc": 4, "pyrunc": 4}


def test_compare_counts_a_crash_and_missing_assertions():
    runc = _run("runc", "ok 1 - a\nok 2 - b\n1..2\n")
    pyrunc = _run("pyrunc", "ok 1 - a\n", rc=None)
    cmp = rt.compare(runc, pyrunc)
    assert cmp.pyrunc_only == ["(missing) ok 2 - b",
                               "not ok - program: timeout, plan None, 1 results"]


FAKE_PROGRAM = """package main

import (
	"fmt"

	"github.com/opencontainers/runtime-tools/generate"
	"github.com/opencontainers/runtime-tools/validation/util"
)

func main() {
	g, err := generate.New("linux")
	fmt.Printf("TAP version 13\\nok 1 - %s %v\\n1..1\\n", util.Name, err == nil && g.Config != nil)
}
"""


def test_build_suite_from_a_source_tree(tmp_path, monkeypatch, rootfs_tarball):
    """build_suite over a stand-in source tree: both program layouts, a package of the tree
    shadowing Debian's library-only copy, runtimetest, the cache stamp, and a run."""
    src = tmp_path / "runtime-tools"
    files = {
        "validation/util/util.go": 'package util\n\nconst Name = "from-the-tree"\n',
        "validation/nested/nested.go": FAKE_PROGRAM,
        "validation/flat.go": FAKE_PROGRAM,
        "cmd/runtimetest/main.go": "package main\n\nfunc main() {}\n",
    }
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    monkeypatch.setattr(rt, "GOCACHE", rt.cache_dir() / "gocache")  # Debian's packages, built
    monkeypatch.setattr(rt, "CACHE_BASE", tmp_path / "cache")
    assert rt.validation_programs(src) == ["flat", "nested"]
    built = rt.build_suite(src)
    assert built.errors == {} and sorted(built.programs) == ["flat", "nested"]
    assert built.runtimetest is not None and built.runtimetest.is_file()
    assert rt.build_suite(src).seconds == 0.0  # from the stamp
    run = rt.run_program("nested", built.programs["nested"], "runc", RUNC, rootfs_tarball,
                         built.runtimetest, 30)
    assert run.returncode == 0 and run.leftovers == []
    assert [r.line for r in run.results][0] == "ok 1 - from-the-tree true"


HANGING_PROGRAM = r"""#!/bin/sh
# Leaves a created container, a mount and a process behind, then hangs.
b="$TMPDIR/bundle"; mkdir -p "$b" "$TMPDIR/mnt"
tar -xf rootfs-amd64.tar.gz -C "$b" && cd "$b" && $RUNTIME spec
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"path": "rootfs"/"path": "."/' config.json
$RUNTIME create --bundle "$b" hang </dev/null >/dev/null 2>&1 && echo "ok 1 - created"
mount -t tmpfs none "$TMPDIR/mnt"
exec sleep 600
"""


@pytest.mark.peer
@pytest.mark.parametrize("runtime", ["runc", "pyrunc"])
def test_timeout_and_cleanup(runtime, tmp_path, rootfs_tarball):
    """A program that hangs is killed at its timeout; its container, mount and directories
    are removed and nothing is reported left behind."""
    program = tmp_path / "hang.t"
    program.write_text(HANGING_PROGRAM)
    program.chmod(0o755)
    binary = {"runc": RUNC, "pyrunc": PYRUNC}[runtime]
    run = rt.run_program("hang", program, runtime, binary, rootfs_tarball, None, 3)
    assert run.returncode is None and run.stdout == "ok 1 - created\n", run.stderr
    assert run.leftovers == []
    assert run.results[-1].line == "not ok - program: timeout, plan None, 1 results"
