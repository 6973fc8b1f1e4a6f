"""The per-call import budget of start, state, kill and delete.

Each of these is a fresh interpreter per call (shims call pyrunc several times per
container), and every module it loads costs ~0.1 ms on top of CPython's own start
(bench/README.md, "Per-call work in instructions"). Read with `-X importtime` from the
installed launcher on a live container: beyond what `-c "import os"` loads,
each verb loads exactly its budget below. A new module on this path must be worth it: make
it lazy where only some calls need it, or add it here saying why.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.rig import PYRUNC

pytestmark = pytest.mark.timeout(120)

COMMON = {"runtime", "_json", "runtime.jsonio", "runtime.cliparse", "runtime.errors",
          "runtime.log", "runtime.state", "runtime.cli", "runtime.container"}
BUDGET = {
    "state": COMMON,
    "start": COMMON | {"fcntl", "select"},  # the state dir's lock; waiting on exec.fifo
    "kill": COMMON | {"runtime.signals"},
    "delete": COMMON | {"fcntl"},  # the lock; a cgroup without sub-cgroups is rmdir'd
}


def _interpreter() -> list[str]:
    """The launcher's `#!python -IS` line, as a command prefix."""
    with open(PYRUNC) as f:
        line = f.readline()
    if not line.startswith("#!") or "-IS" not in line.split():
        pytest.skip(f"{PYRUNC} is not the fast launcher scripts/install.sh writes")
    return line[2:].split()


def _imported(cmd: list[str]) -> set[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return {line.split("|")[2].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def test_each_verb_loads_only_its_budget(pyrunc, bundle):
    py = _interpreter()
    floor = _imported([*py, "-X", "importtime", "-c", "import os"])
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = pyrunc.new_id("hot")
    pyrunc("create", "--bundle", bundle.path, cid, timeout=30, check=True)
    seen = {}
    for verb, args in (("state", []), ("start", []), ("kill", ["KILL"]), ("delete", [])):
        if verb == "delete":
            deadline = time.monotonic() + 10
            while pyrunc.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
                time.sleep(0.02)
        seen[verb] = _imported([*py, "-X", "importtime", PYRUNC, "--root", pyrunc.root,
                                verb, cid, *args]) - floor
    for verb, mods in seen.items():
        assert mods - BUDGET[verb] == set(), f"{verb} loads more than its budget"
        assert COMMON <= mods, verb  # the probe sees the modules it should
    assert "__future__" not in set().union(*seen.values())


def test_run_without_seccomp_skips_the_ctypes_package(pyrunc, bundle):
    """create/run/exec reach the kernel through runtime/linux/cdll.py on `_ctypes`; the
    ctypes package (~1.8 ms) comes only with the modules that need more (seccomp)."""
    py = _interpreter()
    bundle.config["linux"].pop("seccomp", None)
    bundle.write()
    cid = pyrunc.new_id("hot")
    mods = _imported([*py, "-X", "importtime", PYRUNC, "--root", pyrunc.root, "run",
                      "--bundle", bundle.path, cid])
    assert "_ctypes" in mods and "runtime.linux.syscalls" in mods
    assert "ctypes" not in mods
