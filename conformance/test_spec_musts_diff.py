"""runtime-spec MUSTs where pyrunc takes the spec's side and runc 1.1.5 differs (pinned), and
ones both keep: a config without `process`, SELinux labels on a host without SELinux, and a
config.json rewritten between create and start.
"""

from __future__ import annotations

import json
import os

import pytest

from conformance.pair import NAMES
from runtime.spec import selinux_enabled

pytestmark = pytest.mark.peer

no_selinux = pytest.mark.skipif(selinux_enabled(), reason="tests a host without SELinux")
MOUNT_LABEL = "system_u:object_r:container_file_t:s0:c1,c2"
PROCESS_LABEL = "system_u:system_r:container_t:s0:c1,c2"


def _gone(pair, name: str, cid: str) -> bool:
    return not os.path.exists(os.path.join(pair.rt[name].root, cid))


def test_config_without_process(pair, config):
    """The spec requires `process` only for start. pyrunc: create succeeds (the init waits
    on exec.fifo), start fails naming `process` and leaves it created and deletable; `run`
    fails the same way and leaves nothing. runc 1.1.5 refuses already at create."""
    del config["process"]
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, config)
        cid = rt.new_id("noproc")
        created = rt("create", "--bundle", b.path, cid)
        if name == "runc":
            assert created.returncode != 0 and b"process" in created.stderr, created.stderr
            assert _gone(pair, name, cid)
        else:
            assert created.returncode == 0, created.stderr
            pid = rt.state(cid)["pid"]
            assert os.path.exists(os.path.join(rt.root, cid, "exec.fifo"))
            started = rt("start", cid)
            err = started.stderr.decode()
            assert started.returncode != 0 and "process" in err, err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert rt.state(cid)["status"] == "created"
            rt("delete", cid, check=True)  # a created container: no --force needed
            assert _gone(pair, name, cid)
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
        run_cid = rt.new_id("noproc")
        ran = rt("run", "--bundle", b.path, run_cid)
        assert ran.returncode != 0 and b"process" in ran.stderr, (name, ran.stderr)
        assert _gone(pair, name, run_cid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


@no_selinux
def test_mount_label_without_selinux(pair, config):
    """linux.mountLabel without SELinux: pyrunc runs without it (as crun does) and warns
    exactly once, on stderr and in --log. runc 1.1.5 passes context= to the tmpfs mounts and
    the kernel refuses them (EINVAL), so its create fails."""
    config["linux"]["mountLabel"] = MOUNT_LABEL
    config["process"]["args"] = ["sh", "-c", "grep -c context= /proc/self/mountinfo; true"]
    outs = pair.run_both(config)
    assert outs["runc"].rc != 0 and "invalid argument" in outs["runc"].stderr, outs["runc"]
    py = outs["pyrunc"]
    assert py.rc == 0 and py.stdout == "0\n", (py.rc, py.stdout, py.stderr)
    assert py.stderr.count("linux.mountLabel") == 1 and "warning" in py.stderr, py.stderr
    # the warning also reaches --log, once
    rt = pair.rt["pyrunc"]
    b = pair.bundle("pyrunc", config)
    log = os.path.join(b.path, "log.json")
    cid = rt.new_id("label")
    p = rt("--log", log, "--log-format", "json", "run", "--bundle", b.path, cid)
    assert p.returncode == 0, p.stderr
    with open(log) as f:
        lines = [json.loads(ln) for ln in f if "mountLabel" in ln]
    assert [ln["level"] for ln in lines] == ["warning"], lines


@no_selinux
@pytest.mark.parametrize("both", [False, True], ids=["process-label", "with-mount-label"])
def test_process_label_without_selinux_is_refused(pair, config, both):
    """process.selinuxLabel asks for a confinement nothing here can give: both refuse it
    clearly at create (runc: "selinux label is specified in config, but selinux is disabled
    or not supported"); pyrunc names the field. Nothing is left behind."""
    config["process"]["selinuxLabel"] = PROCESS_LABEL
    if both:
        config["linux"]["mountLabel"] = MOUNT_LABEL
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, config)
        cid = rt.new_id("label")
        p = rt("create", "--bundle", b.path, cid)
        err = p.stderr.decode()
        assert p.returncode != 0 and "selinux" in err.lower(), (name, err)
        if name == "pyrunc":
            assert "process.selinuxLabel" in err and err.count("\n") == 1, err
        assert _gone(pair, name, cid)


@no_selinux
def test_exec_process_label_without_selinux_is_refused(pair, config):
    """The same refusal for `exec --process process.json` with a selinuxLabel."""
    config["process"]["args"] = ["sleep", "60"]
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        proc = {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "selinuxLabel": PROCESS_LABEL}
        path = os.path.join(pair.workdir, f"{name}-process.json")
        with open(path, "w") as f:
            json.dump(proc, f)
        p = rt("exec", "--process", path, cid)
        assert p.returncode != 0 and b"selinux" in p.stderr.lower(), (name, p.stderr)
        assert rt.state(cid)["status"] == "running"


@pytest.mark.parametrize("rewrite", ["other-args-and-hooks", "no-process"])
def test_config_rewritten_after_create_is_ignored(pair, config, rewrite):
    """What create read is what start runs: a config.json changed in between (other args, a
    new poststart hook, or no process at all) changes nothing."""
    config["root"]["readonly"] = False
    config["process"]["args"] = ["sh", "-c", "echo original > /tmp/who"]
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, config)
        cid = rt.new_id("rewrite")
        rt("create", "--bundle", b.path, cid, check=True)
        marker = os.path.join(b.path, "poststart-ran")
        if rewrite == "no-process":
            del b.config["process"]
        else:
            b.config["process"]["args"] = ["sh", "-c", "echo rewritten > /tmp/who"]
            b.config["hooks"] = {"poststart": [{"path": "/bin/touch", "args": ["touch", marker]}]}
        b.write()
        rt("start", cid, check=True)
        pair.wait_status(name, cid, "stopped")
        rt("delete", cid, check=True)
        with open(os.path.join(b.rootfs, "tmp/who")) as f:
            assert f.read() == "original\n", name
        assert not os.path.exists(marker), name
