"""OCI hooks, runc 1.1.5 and pyrunc side by side: the state each hook kind reads on stdin,
its cwd and namespaces, relative paths in hooks, and how a failing hook is reported.

pyrunc follows the runtime-spec; where runc 1.1.5 differs the difference is pinned here
(RUNC_DIFFERS), so a change on either side shows up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest

from conformance.pair import NAMES

pytestmark = pytest.mark.peer

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")

# (status, pid as "host" | "container" | None, cwd, mount namespace "runtime" | "container")
SPEC = {
    "prestart": ("created", "host", "bundle", "runtime"),
    "createRuntime": ("created", "host", "bundle", "runtime"),
    "createContainer": ("created", "container", "rootfs", "container"),
    "startContainer": ("created", "container", "process.cwd", "container"),
    "poststart": ("running", "host", "bundle", "runtime"),
    "poststop": ("stopped", "host", "caller", "runtime"),
}
# runc 1.1.5: the create-time hooks see "creating" (the spec: created, after lifecycle
# step 2; crun says created); poststart runs inside `create`, so it sees
# "created" and runs before startContainer; poststop gets no pid.
RUNC_DIFFERS = {
    "prestart": ("creating", "host", "bundle", "runtime"),
    "createRuntime": ("creating", "host", "bundle", "runtime"),
    "createContainer": ("creating", "container", "rootfs", "container"),
    "poststart": ("created", "host", "bundle", "runtime"),
    "poststop": ("stopped", None, "caller", "runtime"),
}
ORDER = {"pyrunc": (["prestart", "createRuntime", "createContainer"],
                    ["startContainer", "poststart"]),
         "runc": (["prestart", "createRuntime", "createContainer", "poststart"],
                  ["startContainer"])}


def _recorder(kind: str, out: str) -> dict[str, Any]:
    """A hook that saves its stdin, cwd and mount namespace under `out` (a path it can reach:
    the host's for runtime-namespace hooks, /out inside the container for startContainer)."""
    script = (f"cat > {out}/{kind}.json; pwd > {out}/{kind}.cwd; "
              f"readlink /proc/self/ns/mnt > {out}/{kind}.mnt; echo {kind} >> {out}/order")
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


def _seen(out: str, kind: str, pid: int, ctr_mnt: str, paths: dict[str, str]
          ) -> tuple[Any, ...]:
    with open(f"{out}/{kind}.json") as f:
        st = json.load(f)
    got_pid = {pid: "host", 1: "container"}.get(st.get("pid"), st.get("pid"))
    with open(f"{out}/{kind}.cwd") as f:
        cwd = f.read().strip()
    mnt_file = f"{out}/{kind}.mnt"
    mnt = None
    if os.path.exists(mnt_file):
        with open(mnt_file) as f:
            m = f.read().strip()
        mnt = {ctr_mnt: "container", os.readlink("/proc/self/ns/mnt"): "runtime"}.get(m, m)
    return (st["status"], got_pid, {v: k for k, v in paths.items()}.get(cwd, cwd), mnt)


def test_hook_state_cwd_and_namespace_per_kind(pair, config):
    config["process"]["args"] = ["sleep", "60"]
    config["process"]["cwd"] = "/tmp"
    caller = tempfile.mkdtemp(prefix="conf-hook-caller-")
    try:
        for name in NAMES:
            rt = pair.rt[name]
            out = os.path.join(pair.workdir, f"{name}-hook-out")
            os.makedirs(out)
            cfg = json.loads(json.dumps(config))
            cfg["mounts"].append({"destination": "/out", "type": "bind", "source": out,
                                  "options": ["rbind", "rw"]})
            cfg["hooks"] = {k: [_recorder(k, "/out" if k == "startContainer" else out)]
                            for k in KINDS}
            b = pair.bundle(name, cfg)
            cid = rt.new_id("hook")
            rt("create", "--bundle", b.path, cid, check=True, cwd=caller)
            pid = rt.state(cid)["pid"]
            ctr_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
            with open(f"{out}/order") as f:
                at_create = f.read().split()
            rt("start", cid, check=True, cwd=caller)
            rt("kill", cid, "KILL", check=True)
            pair.wait_status(name, cid, "stopped")
            rt("delete", cid, check=True, cwd=caller)
            with open(f"{out}/order") as f:
                after_start = f.read().split()[len(at_create):-1]
            assert (at_create, after_start) == ORDER[name], name
            paths = {"bundle": b.path, "rootfs": os.path.realpath(b.rootfs),
                     "process.cwd": "/tmp", "caller": caller}
            want = dict(SPEC, **RUNC_DIFFERS) if name == "runc" else SPEC
            for kind in KINDS:
                got = _seen(out, kind, pid, ctr_mnt, paths)
                assert got == want[kind], (name, kind, got, want[kind])
    finally:
        shutil.rmtree(caller, ignore_errors=True)


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(path)]


@pytest.mark.skipif(not shutil.which("nsenter") or not shutil.which("mount"),
                    reason="needs util-linux nsenter and mount on the host")
def test_hooks_with_relative_paths_and_nsenter(pair, config):
    """runc's "hooks library tests": a createRuntime hook bind-mounts a file into the
    container through nsenter on the pid it read; a createContainer hook does the same with
    paths relative to its cwd (the rootfs); a startContainer hook reads relative to
    process.cwd. The container must see both files; the host none of the mounts."""
    config["root"]["readonly"] = False
    config["process"]["cwd"] = "/lib"
    config["process"]["args"] = ["sh", "-c", "cat /lib/cr.so /lib/cc.so /tmp/sc"]

    def mutate(cfg: dict[str, Any], bundle: str) -> None:
        os.makedirs(os.path.join(bundle, "rootfs/lib"))
        for f in ("cr", "cc"):
            with open(os.path.join(bundle, f"{f}.so"), "w") as fh:
                fh.write(f"{f} from the bundle\n")
        lib = os.path.join(bundle, "rootfs/lib")
        cr = (f"pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); touch {lib}/cr.so && "
              f"nsenter -m -t $pid mount --bind {bundle}/cr.so {lib}/cr.so")
        cc = f"touch ./lib/cc.so && mount --bind {bundle}/cc.so ./lib/cc.so"
        cfg["hooks"] = {
            "createRuntime": [{"path": "/bin/sh", "args": ["/bin/sh", "-c", cr],
                               "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}],
            "createContainer": [{"path": "/bin/sh", "args": ["/bin/sh", "-c", cc],
                                 "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat cc.so > /tmp/sc"]}],
        }

    try:
        outs = pair.run_both(config, mutate)
        for name, o in outs.items():
            assert o.rc == 0, (name, o.stderr)
            assert o.stdout == "cr from the bundle\ncc from the bundle\ncc from the bundle\n", \
                (name, o.stdout, o.stderr)
    finally:
        left = _mounts_under(pair.workdir)
        for m in reversed(left):
            subprocess.run(["umount", "-l", m], check=False)
    assert not left, f"hook mounts leaked into the host: {left}"


FAILING = [{"path": "/bin/true"},
           {"path": "/bin/sh", "args": ["sh", "-c", "echo out; echo boom >&2; exit 3"]}]


@pytest.mark.parametrize("kind", KINDS)
def test_failing_hook_wording(pair, config, kind):
    """runc 1.1.5's wording, "error running hook #1: ...", for every kind; pyrunc also names
    the field. A failing create-time or startContainer hook fails `run` (exit 1, the program
    never runs); poststop only warns. poststart: the spec says warn and go on (pyrunc);
    runc 1.1.5 runs it inside create and fails."""
    config["process"]["args"] = ["echo", "Hello World"]
    config["hooks"] = {kind: FAILING}
    outs = pair.run_both(config)
    for name, o in outs.items():
        assert "error running hook #1: " in o.stderr, (name, o.stderr)
        assert "exit status 3" in o.stderr, (name, o.stderr)
        if name == "pyrunc":
            assert f"hooks.{kind}[1] (/bin/sh)" in o.stderr and "boom" in o.stderr, o.stderr
        fails = kind not in ("poststop", "poststart") or (kind, name) == ("poststart", "runc")
        if fails:
            assert o.rc == 1 and "Hello World" not in o.stdout, (name, o.rc, o.stdout)
        else:
            assert o.rc == 0 and o.stdout == "Hello World\n", (name, o.rc, o.stderr)


def test_hook_timeout_wording(pair, config):
    config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "20"],
                                          "timeout": 1}]}
    outs = pair.run_both(config)
    assert "error running hook #0: hook ran past specified timeout of 1.0s" in \
        outs["runc"].stderr, outs["runc"].stderr
    assert "error running hook #0: hooks.createRuntime[0] (/bin/sleep): timed out after 1s" \
        in outs["pyrunc"].stderr, outs["pyrunc"].stderr
    assert outs["runc"].rc != 0 and outs["pyrunc"].rc != 0


def test_start_container_hook_under_seccomp(pair, config):
    """runc's seccomp.bats "(startContainer hook)": the filter is in place when the hook
    runs, so its mkdir kills it; the error names the hook and the signal."""
    config["process"]["args"] = ["true"]
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
    config["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                           "args": ["sh", "-c", "mkdir /dev/shm/foo"]}]}
    outs = pair.run_both(config)
    for name, o in outs.items():
        assert o.rc != 0, name
        assert "error running hook" in o.stderr and "bad system call" in o.stderr, \
            (name, o.stderr)
