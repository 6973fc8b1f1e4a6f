"""SCMP_ACT_NOTIFY, runc and pyrunc side by side, each with its own seccomp agent
(conformance/seccomp_agent.py): the agent gets the listener and answers for the container
(run and exec, with and without noNewPrivileges), the runtimes refuse the same profiles
(NOTIFY on write, no listenerPath) and fail alike when nobody listens, and an agent that
hangs up leaves notified syscalls failing with ENOSYS instead of hanging.
"""

from __future__ import annotations

import copy
import os
import tempfile
import uuid
from typing import Any

import pytest

from conformance import seccomp_profiles as sp
from conformance.pair import NAMES, Pair
from conformance.seccomp_agent import Agent

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120),
              pytest.mark.skipif(os.uname().machine != "x86_64",
                                 reason="the profiles name x86 architectures")]

ARCHES = ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"]


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="conf-agent-")
    yield d
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    os.rmdir(d)


@pytest.fixture
def agents(sockdir):
    """agents(hang_up=False, abstract=False) -> {runtime: Agent}, stopped at teardown."""
    made: list[Agent] = []

    def make(hang_up: bool = False, abstract: bool = False) -> dict[str, Agent]:
        out = {}
        for name in NAMES:
            addr = (f"@conf-agent-{uuid.uuid4().hex[:12]}" if abstract
                    else os.path.join(sockdir, f"{name}-{len(made)}.sock"))
            a = Agent(addr, hang_up=hang_up)
            a.start()
            made.append(a)
            out[name] = a
        return out
    yield make
    errors = []
    for a in made:
        a.stop()
        errors += [a.error] if a.error else []
    assert not errors, errors


def _notify(cfg: dict[str, Any], script: str, nnp: bool, names: list[str],
            path: str = "") -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    out["process"]["args"] = ["/bin/sh", "-c", script]
    out["process"]["noNewPrivileges"] = nnp
    out["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path, "listenerMetadata": "bar",
        "architectures": ARCHES,
        "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]}
    return out


def _run_each(pair: Pair, cfg: dict[str, Any], agents: dict[str, Agent] | None,
              path: str | None = None) -> dict[str, tuple[int, str, str]]:
    """Run under each runtime with its own agent's address (or `path`)."""
    seen = {}
    for name in NAMES:
        c = copy.deepcopy(cfg)
        c["linux"]["seccomp"]["listenerPath"] = (agents[name].address if agents else path)
        o = pair.run(name, c)
        seen[name] = (o.rc, o.stdout, o.stderr)
    return seen


@pytest.mark.parametrize("nnp", [False, True], ids=["no-nnp", "nnp"])
def test_agent_makes_the_directory(pair, config, agents, nnp):
    ag = agents()
    cfg = _notify(config, "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo-bar", nnp, ["mkdir"])
    seen = _run_each(pair, cfg, ag)
    assert seen["runc"][:2] == (0, "directory\n"), seen["runc"]
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]
    for name in NAMES:
        assert ag[name].seen == ["mkdir"]
        (msg,) = ag[name].messages
        assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "bar", name
        assert msg["state"]["status"] == "creating", name


@pytest.mark.parametrize("nnp", [False, True], ids=["no-nnp", "nnp"])
def test_exec_gets_the_agent_too(pair, config, agents, nnp):
    ag = agents()
    cfg = _notify(config, "sleep 600", nnp, ["mkdir"])
    seen = {}
    for name in NAMES:
        cfg["linux"]["seccomp"]["listenerPath"] = ag[name].address
        cid, _pid = pair.start_detached(name, cfg)
        p = pair.rt[name]("exec", cid, "/bin/sh", "-c",
                          "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo-bar")
        seen[name] = (p.returncode, p.stdout.decode())
        pair.rt[name]("kill", cid, "KILL")
        assert len(ag[name].messages) == 2, name  # the init's and the exec's
        assert ag[name].messages[1]["state"]["status"] == "running", name
    assert seen["runc"] == (0, "directory\n")
    assert seen["pyrunc"] == seen["runc"]


@pytest.mark.parametrize("nnp", [False, True], ids=["no-nnp", "nnp"])
def test_important_syscalls_notified(pair, config, agents, nnp):
    """The runtime's own last steps (execve, open, read, close) pass through the agent."""
    cfg = _notify(config, "/bin/true", nnp, ["execve", "openat", "open", "read", "close"])
    cfg["process"]["args"] = ["/bin/true"]
    seen = _run_each(pair, cfg, agents())
    assert seen["runc"][0] == 0, seen["runc"]
    assert seen["pyrunc"][0] == 0, seen["pyrunc"]


def test_notify_under_a_denying_default(pair, config, agents):
    """An allow list under SCMP_ACT_ERRNO (so the -ENOSYS prologue applies) plus NOTIFY."""
    sec = sp.allow_upto(sp.SyscallTable(), "close_range", "SCMP_ACT_ERRNO", skip=("mkdir",))
    sec["syscalls"].append({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"})
    sec["listenerMetadata"] = "bar"
    cfg = copy.deepcopy(config)
    cfg["linux"]["seccomp"] = sec
    cfg["process"]["args"] = ["/bin/sh", "-c",
                              "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo-bar"]
    ag = agents()
    seen = _run_each(pair, cfg, ag)
    assert seen["runc"][:2] == (0, "directory\n"), seen["runc"]
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]
    assert all(ag[n].seen == ["mkdir"] for n in NAMES)


def test_listener_path_without_notify_rules(pair, config, agents):
    ag = agents()
    cfg = _notify(config, "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo", False, ["mkdir"])
    cfg["linux"]["seccomp"]["syscalls"] = []
    seen = _run_each(pair, cfg, ag)
    assert seen["runc"][:2] == (0, "directory\n")
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]
    assert all(not ag[n].messages for n in NAMES)  # nobody connects


def test_metadata_without_listener_path(pair, config):
    cfg = copy.deepcopy(config)
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "bar"}
    seen = {name: pair.run(name, cfg) for name in NAMES}
    assert seen["runc"].rc == 0, seen["runc"].stderr
    assert seen["pyrunc"].rc == 0, seen["pyrunc"].stderr


def test_abstract_listener_path(pair, config, agents):
    cfg = _notify(config, "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo-bar", False, ["mkdir"])
    seen = _run_each(pair, cfg, agents(abstract=True))
    assert seen["runc"][:2] == (0, "directory\n"), seen["runc"]
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen["pyrunc"]


def test_relative_listener_path_is_from_the_bundle(pair, config, sockdir):
    """runc works in the bundle directory: a relative listenerPath is found there."""
    cfg = _notify(config, "mkdir /dev/shm/foo && stat -c %F /dev/shm/foo-bar", False, ["mkdir"],
                  "agent.sock")
    seen = {}
    for name in NAMES:
        b = pair.bundle(name, cfg)
        agent = Agent(os.path.join(b.path, "agent.sock"))
        agent.start()
        try:
            p = pair.rt[name]("run", "--bundle", b.path, pair.rt[name].new_id("conf"),
                              cwd=sockdir)
        finally:
            agent.stop()
        seen[name] = (p.returncode, p.stdout.decode(), p.stderr.decode())
        assert agent.error is None, agent.error
    assert seen["runc"][:2] == (0, "directory\n"), seen
    assert seen["pyrunc"][:2] == seen["runc"][:2], seen


def test_agent_error_reaches_the_caller(pair, config, agents):
    cfg = _notify(config, "touch /dev/shm/foo && chmod 777 /dev/shm/foo", False,
                  ["chmod", "fchmod", "fchmodat"])
    seen = _run_each(pair, cfg, agents())
    for name in NAMES:
        rc, _out, err = seen[name]
        assert rc != 0 and "chmod: /dev/shm/foo: No medium found" in err, (name, seen[name])


def test_agent_gone_gives_enosys(pair, config, agents):
    cfg = _notify(config, "mkdir /dev/shm/foo", False, ["mkdir"])
    ag = agents(hang_up=True)
    seen = _run_each(pair, cfg, ag)
    for name in NAMES:
        rc, _out, err = seen[name]
        assert rc != 0 and "/dev/shm/foo" in err and "Function not implemented" in err, \
            (name, seen[name])
        assert len(ag[name].messages) == 1


# (id, names, listenerPath (None: a socket nobody listens on), words both errors contain)
REFUSED = [
    ("no_agent", ["mkdir"], None, "failed to connect with seccomp agent"),
    ("no_abstract_agent", ["mkdir"], "@conf-nobody-here", "failed to connect with seccomp agent"),
    ("empty_path", ["mkdir"], "", "listenerPath is not set"),
    ("write", ["write"], None, "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
]


@pytest.mark.parametrize("names,path,words", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_alike(pair, config, sockdir, names, path, words):
    cfg = _notify(config, "/bin/true", False, names)
    if path is None:
        path = os.path.join(sockdir, "nobody.sock")
    seen = _run_each(pair, cfg, None, path)
    for name in NAMES:
        rc, _out, err = seen[name]
        assert rc != 0 and words in err, (name, seen[name])
        assert not pair.rt[name]("list", "-q").stdout.strip(), name  # nothing half-made
    err = seen["pyrunc"][2].strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_start_container_hook_gets_no_extra_fd(pair, config, agents):
    """A startContainer hook (run in the container after the filter) sees only its stdio."""
    cfg = _notify(config, "/bin/true", False, ["mkdir"])
    cfg["process"]["args"] = ["/bin/true"]
    cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
        "sh", "-c", "n=$(ls /proc/self/fd/ | wc -l); [ $n -eq 4 ] || { echo fds=$n >&2; "
        "ls -l /proc/self/fd >&2; exit 1; }"]}]}
    seen = _run_each(pair, cfg, agents())
    assert seen["runc"][0] == 0, seen["runc"]
    assert seen["pyrunc"][0] == 0, seen["pyrunc"]
