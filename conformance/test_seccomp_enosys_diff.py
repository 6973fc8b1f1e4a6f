"""Syscalls newer than the seccomp profile, runc and pyrunc side by side.

Under a denying default action runc answers syscalls numbered above the highest one the
profile names (per listed architecture) with ENOSYS, so programs can fall back as on an
older kernel; numbers inside the profile's range still get the default action. A small
static C program (built here with gcc) makes the raw syscalls and prints each errno.
The profile allows every syscall this libseccomp knows up to close_range, except getppid.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from typing import Any

import pytest

from conformance import seccomp_profiles as sp
from conformance.pair import NAMES
from conformance.seccomp_profiles import SyscallTable as Table

pytestmark = pytest.mark.peer

EPERM, EACCES, ENOSYS = 1, 13, 38
PROGRAM = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = strtol(argv[i], 0, 0);
        errno = 0;
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        printf("%s %d\n", argv[i], r < 0 ? errno : 0);
        fflush(stdout);
    }
    return 0;
}
"""
GCC = shutil.which("gcc")


@pytest.fixture(scope="module")
def table() -> Table:
    return Table()


@pytest.fixture(scope="module")
def nosys(tmp_path_factory) -> str:
    if not GCC:
        pytest.skip("gcc is not installed: cannot build the raw-syscall program")
    d = tmp_path_factory.mktemp("nosys")
    src = d / "nosys.c"
    src.write_text(PROGRAM)
    out = str(d / "nosys")
    p = subprocess.run([GCC, "-static", "-O", "-o", out, str(src)], capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0 and "cannot find -lc" in p.stderr:
        pytest.skip("no static libc (libc6-dev) for gcc -static")
    assert p.returncode == 0, p.stderr
    return out


def _profile(table: Table, default: str, arches: bool = True, **extra: Any) -> dict[str, Any]:
    sec = sp.allow_upto(table, "close_range", default, skip=("getppid",))
    if not arches:
        del sec["architectures"]
    sec.update(extra)
    return sec


def _cases(t: Table) -> dict[str, tuple[dict[str, Any], dict[int, int]]]:
    """id -> (seccomp section, {syscall number to make: the errno runc gives it})"""
    top = t.nr("close_range")
    getppid = t.nr("getppid")
    beyond = {top + 1: ENOSYS, top + 13: ENOSYS, 5000: ENOSYS}
    mrelease = t.nr("process_mrelease")
    with_late_rule = _profile(t, "SCMP_ACT_ERRNO")
    # a rule whose action is the default's: left out of the filter, yet it moves the limit
    with_late_rule["syscalls"].append({"names": ["process_mrelease", "no_such_syscall"],
                                       "action": "SCMP_ACT_ERRNO"})
    return {
        "errno_default": (_profile(t, "SCMP_ACT_ERRNO"), {getppid: EPERM, **beyond}),
        "errno_ret": (_profile(t, "SCMP_ACT_ERRNO", defaultErrnoRet=EACCES),
                      {getppid: EACCES, **beyond}),
        "kill_default": (_profile(t, "SCMP_ACT_KILL_PROCESS"), beyond),
        "trap_default": (_profile(t, "SCMP_ACT_TRAP"), beyond),
        "no_architectures": (_profile(t, "SCMP_ACT_ERRNO", arches=False),
                             {getppid: EPERM, top + 1: EPERM, 5000: EPERM}),
        "late_rule_moves_limit": (with_late_rule, {top + 1: EPERM, mrelease: EPERM,
                                                   mrelease + 1: ENOSYS, 5000: ENOSYS}),
    }


CASE_IDS = ["errno_default", "errno_ret", "kill_default", "trap_default",
            "no_architectures", "late_rule_moves_limit"]


def _expect(calls: dict[int, int]) -> list[str]:
    return [f"{nr} {err}" for nr, err in calls.items()]


def _with_program(program: str):
    def mutate(cfg: dict[str, Any], bundle: str) -> None:
        shutil.copy(program, os.path.join(bundle, "rootfs", "nosys"))
    return mutate


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_newer_syscalls_get_enosys(pair, config, table, nosys, case_id):
    section, calls = _cases(table)[case_id]
    cfg = copy.deepcopy(config)
    cfg["linux"]["seccomp"] = section
    cfg["process"]["args"] = ["/nosys", *map(str, calls)]
    outs = {name: pair.run(name, cfg, _with_program(nosys)) for name in NAMES}
    seen = {name: (o.rc, o.stdout.split("\n")[:-1]) for name, o in outs.items()}
    assert seen["runc"] == (0, _expect(calls)), outs["runc"].stderr
    assert seen["pyrunc"] == seen["runc"], outs["pyrunc"].stderr


@pytest.mark.timeout(120)
def test_exec_gets_the_same_filter(pair, config, table, nosys):
    """`exec` joins the container's filter, prologue included."""
    cfg = copy.deepcopy(config)
    cfg["linux"]["seccomp"] = _profile(table, "SCMP_ACT_ERRNO")
    cfg["process"]["args"] = ["sleep", "600"]
    calls = {table.nr("getppid"): EPERM, table.nr("close_range") + 1: ENOSYS, 5000: ENOSYS}
    seen = {}
    for name in NAMES:
        cid, _pid = pair.start_detached(name, cfg, _with_program(nosys))
        p = pair.rt[name]("exec", cid, "/nosys", *map(str, calls), timeout=60)
        seen[name] = (p.returncode, p.stdout.decode().split("\n")[:-1])
        pair.rt[name]("kill", cid, "KILL")
    assert seen["runc"] == (0, _expect(calls))
    assert seen["pyrunc"] == seen["runc"]
