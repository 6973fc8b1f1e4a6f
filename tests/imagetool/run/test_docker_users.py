"""What a docker user hits first, side by side with docker 20.10 (a private dockerd, the same
busybox image loaded into it from our store): exit statuses of run and exec, TERM/HOSTNAME,
image IDs, rmi's conflict with a container, ps/images shapes, exec -t's window size, create
and start. Where dockerd can't run here the docker half is skipped, ours still runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from imagetool.run.records import Records
from tests.imagetool.conftest import free_port
from tests.imagetool.run.test_run import _on_pty, _wait_exited
from tests.imagetool.storehelp import (
    DOCKER,
    IMAGETOOL,
    imagetool,
    private_network,
    remove_containers,
    rootfs_tar,
    running_dockerd,
    unmount_under,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itdu-")
    root = os.path.join(d, "store")
    try:
        iid = imagetool(root, "import", "--cmd", "sh", rootfs_tar(d),
                        "busybox:latest").stdout.decode().strip()
        with private_network(root, "itd", 91) as bridge:
            try:
                yield {"dir": d, "root": root, "bridge": bridge, "iid": iid}
            finally:
                remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd(env):
    with running_dockerd() as d:
        save = subprocess.run([IMAGETOOL, "--root", env["root"], "save", "busybox"],
                              capture_output=True, timeout=120, check=True)
        p = subprocess.run([DOCKER or "docker", "load"], input=save.stdout, env=d.env,
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        yield d


@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def _ours(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return imagetool(env["root"], *args, check=False, timeout=timeout)


RUN_CASES = [(["nosuchcmd"], 127), (["/etc"], 126), (["/nonexistent/x"], 127),
             (["sh", "-c", "exit 3"], 3)]


@pytest.mark.parametrize("cmd,code", RUN_CASES)
def test_run_exit_status_contract(env, it, cmd, code):
    """Bug 7: 125 the tool failed, 126 cannot execute, 127 not found, else the command's."""
    p = _ours(env, "run", "--rm", "--network", "none", "busybox", *cmd)
    assert p.returncode == code, p.stderr.decode()
    assert Records(env["root"]).ids() == []


def test_run_tool_failures_are_125(env, it):
    assert _ours(env, "run", "--rm", "--bogus-flag", "busybox").returncode == 125
    p = _ours(env, "run", "--rm", "-v", "bad name!:/x", "busybox", "true")
    assert p.returncode == 125 and "invalid volume name" in p.stderr.decode()
    p = _ours(env, "run", "--rm", "--network", "none", "busybox", "--", "true")
    assert p.returncode in (0, 127)


def test_run_exit_statuses_match_docker(env, it, dockerd):
    for cmd, code in RUN_CASES:
        d = dockerd.docker("run", "--rm", "--network", "none", "busybox", *cmd, check=False)
        assert d.returncode == code, (cmd, d.stderr.decode())
    assert dockerd.docker("run", "--rm", "--bogus-flag", "busybox",
                          check=False).returncode == 125


def test_exec_exit_statuses_match_docker(env, it, dockerd):
    it("run", "-d", "--name", "sl", "--network", "none", "busybox", "sleep", "60")
    dockerd.docker("run", "-d", "--name", "dsl", "--network", "none", "busybox", "sleep", "60")
    try:
        # docker 20.10's exec says 126 for a command not found too; podman (and run) 127
        for cmd, code, docker_codes in ((["nosuchcmd"], 127, (126, 127)), (["/etc"], 126, (126,)),
                                        (["sh", "-c", "exit 5"], 5, (5,))):
            ours = _ours(env, "exec", "sl", *cmd).returncode
            theirs = dockerd.docker("exec", "dsl", *cmd, check=False).returncode
            assert ours == code and theirs in docker_codes, (cmd, ours, theirs)
        # no such container: the tool failed (125, as podman; docker 20.10 says 1)
        assert _ours(env, "exec", "nosuchcontainer", "true").returncode == 125
        assert dockerd.docker("exec", "nosuchcontainer", "true", check=False).returncode != 0
    finally:
        dockerd.docker("rm", "-f", "dsl", check=False)


def _env_names(out: bytes) -> list[str]:
    return [line.split("=", 1)[0] for line in out.decode().replace("\r", "").splitlines()
            if "=" in line]


def test_tty_sets_term_and_hostname_as_docker(env, it, dockerd):
    """Bug 4: run -t gives TERM=xterm and HOSTNAME (the short id), in docker's order."""
    for tty in ([], ["-t"]):
        ours = _ours(env, "run", "--rm", *tty, "--network", "none", "busybox", "env").stdout
        theirs = dockerd.docker("run", "--rm", *tty, "--network", "none", "busybox",
                                "env").stdout
        assert _env_names(ours) == _env_names(theirs), (ours, theirs)
    out = _ours(env, "run", "--rm", "-t", "--hostname", "box", "--network", "none",
                "busybox", "env").stdout.decode()
    assert "HOSTNAME=box\r\n" in out and "TERM=xterm\r\n" in out


def test_exec_tty_term_window_size_and_resize(env, it):
    """Bug 4: exec -t has TERM=xterm and the caller's window size, and follows resizes."""
    it("run", "-d", "--name", "sz", "--network", "none", "busybox", "sleep", "60")
    rc, out = _on_pty(env["root"], ["exec", "-t", "sz", "sh", "-c",
                                    'echo "T=$TERM H=$HOSTNAME"; stty size'])
    text = out.decode(errors="replace")
    assert rc == 0 and "T=xterm H=" in text and "24 80" in text, text
    wait = ('stty size; i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 100 ]; do '
            'sleep 0.1; i=$((i+1)); done; echo "now $(stty size)"')
    rc, out = _on_pty(env["root"], ["exec", "-t", "sz", "sh", "-c", wait],
                      [(b"24 80\r", (40, 120))], ctty=True)
    assert rc == 0 and b"now 40 120" in out, out


def test_image_id_is_dockers_and_works_after_a_second_tag(env, it, dockerd):
    """Bugs 1 and 2: the ID is the config digest, docker's own for the same image, and it
    still names the image (run, inspect) once two names share it."""
    [info] = json.loads(dockerd.docker("image", "inspect", "busybox").stdout)
    assert info["Id"] == env["iid"]
    it("tag", "busybox", "127.0.0.1:5055/byid:1")
    try:
        short = env["iid"][7:19]
        assert it("images", "-q", "busybox").stdout.decode().split() == [short]
        p = _ours(env, "run", "--rm", "--network", "none", short, "echo", "by id")
        assert p.returncode == 0 and p.stdout == b"by id\n", p.stderr.decode()
        [doc] = json.loads(it("inspect", short).stdout)
        assert doc["Id"] == env["iid"]
        assert doc["RepoTags"] == ["127.0.0.1:5055/byid:1", "busybox:latest"]
    finally:
        it("rmi", "127.0.0.1:5055/byid:1")


def test_rmi_refuses_an_image_a_container_uses_like_docker(env, it, dockerd):
    """Bug 3: the last name of an image a container uses is not removed without -f."""
    it("tag", "busybox", "inuse:1")
    dockerd.docker("tag", "busybox", "inuse:1")
    it("run", "-d", "--name", "user1", "--network", "none", "inuse:1", "sleep", "60")
    dockerd.docker("run", "-d", "--name", "duser1", "--network", "none", "inuse:1",
                   "sleep", "60")
    try:
        # busybox:latest still names the image: untagging inuse:1 is fine, in both
        it("tag", "busybox", "spare:1")
        dockerd.docker("tag", "busybox", "spare:1")
        assert it("rmi", "spare:1").stdout == b"Untagged: spare:1\n"
        dockerd.docker("rmi", "spare:1")
        # a name of its own: the container's image would lose its last name
        it("tag", "busybox", "solo:1")
        it("rmi", "busybox")  # still named by inuse:1 and solo:1
        it("rmi", "solo:1")
        ours = _ours(env, "rmi", "inuse:1")
        dockerd.docker("rmi", "busybox", "-f", check=False)  # docker: untag, not delete
        theirs = dockerd.docker("rmi", "inuse:1", check=False)
        assert ours.returncode == theirs.returncode == 1, theirs.stderr.decode()
        for p in (ours, theirs):
            err = p.stderr.decode()
            assert "conflict: unable to remove repository reference" in err, err
            assert "(must force) - container" in err and "is using its referenced image" in err
        assert it("images", "-q", "inuse").stdout.decode().strip() == env["iid"][7:19]
        it("rm", "-f", "user1")
        it("run", "--name", "user2", "--network", "none", "inuse:1", "true")
        assert _ours(env, "rmi", "inuse:1").returncode == 1  # a stopped container counts too
        it("rm", "user2")
    finally:
        dockerd.docker("rm", "-f", "duser1", check=False)
        dockerd.docker("tag", "inuse:1", "busybox", check=False)
        dockerd.docker("rmi", "inuse:1", check=False)
        remove_containers(env["root"])
        it("tag", "inuse:1", "busybox")
        it("rmi", "inuse:1")


def test_ps_and_images_headers_are_dockers(env, it, dockerd):
    assert it("ps").stdout == dockerd.docker("ps").stdout
    assert it("ps", "-a", "--filter", "name=nothing").stdout == \
        dockerd.docker("ps", "-a", "--filter", "name=nothing").stdout
    ours = it("images", "busybox").stdout.decode().splitlines()
    theirs = dockerd.docker("images", "busybox").stdout.decode().splitlines()
    assert ours[0] == theirs[0]
    assert ours[1].split()[:3] == theirs[1].split()[:3]  # REPOSITORY TAG IMAGE ID
    assert ours[1].split()[-1] == theirs[1].split()[-1]  # SIZE, uncompressed as docker's


def test_ps_shapes(env, it):
    it("run", "--name", "gone", "--network", "none", "busybox", "sh", "-c", "exit 3",
       check=False)
    it("create", "--name", "made", "--network", "none", "busybox", "echo", "a long command "
       "line that will be cut")
    it("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "60")
    lines = it("ps", "-a").stdout.decode().splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["up", "made", "gone"]  # newest first
    by = {line.split()[-1]: line for line in lines[1:]}
    assert re.search(r"\bUp (Less than a second|\d+ seconds?)\s", by["up"])
    assert re.search(r"\bExited \(3\) (Less than a second|\d+ seconds?) ago\s", by["gone"])
    assert re.search(r"\bCreated\s", by["made"]) and '"echo a long command…"' in by["made"]
    assert it("ps", "--format", "{{.Names}}").stdout == b"up\n"
    assert it("ps", "-a", "-n", "2", "--format", "{{.Names}}").stdout == b"up\nmade\n"
    assert it("ps", "-l", "-q").stdout.decode().strip() == \
        it("inspect", "-f", "{{.Id}}", "up").stdout.decode().strip()[:12]
    rows = [json.loads(x) for x in it("ps", "-a", "--format", "json").stdout.splitlines()]
    assert [r["Names"] for r in rows] == ["up", "made", "gone"]
    assert rows[0]["Image"] == "busybox" and rows[0]["State"] == "running"
    assert it("ps", "-a", "--filter", "status=exited", "--format",
              "{{.Names}} {{.Status}}").stdout.decode().startswith("gone Exited (3)")


def test_create_then_start(env, it):
    cid = it("create", "--name", "later", "--network", "none", "busybox", "sh", "-c",
             "echo out; exit 4").stdout.decode().strip()
    assert len(cid) == 64
    assert it("inspect", "-f", "{{.State.Status}}", "later").stdout == b"created\n"
    p = _ours(env, "start", "-a", "later")
    assert p.returncode == 4 and p.stdout == b"out\n"
    assert it("start", "later").stdout == b"later\n"  # a stopped container starts again
    _wait_exited(env["root"], cid)
    p = _ours(env, "start", "-a", "later")
    assert p.returncode == 4
    assert it("logs", "later").stdout == b"out\nout\nout\n"
    p = _ours(env, "create", "--network", "none", "busybox", "nosuchcmd")
    assert p.returncode == 0  # docker creates it too; starting it fails
    bad = p.stdout.decode().strip()
    p = _ours(env, "start", "-a", bad)
    assert p.returncode == 127 and "executable file not found" in p.stderr.decode()


def test_container_inspect_in_dockers_shape(env, it, dockerd):
    it("run", "-d", "--name", "shape", "--network", "none", "busybox", "sleep", "60")
    dockerd.docker("run", "-d", "--name", "shape", "--network", "none", "busybox", "sleep",
                   "60")
    try:
        [ours] = json.loads(it("inspect", "shape").stdout)
        [theirs] = json.loads(dockerd.docker("inspect", "shape").stdout)
        for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount",
                    "HostConfig", "Mounts", "Config", "NetworkSettings", "LogPath",
                    "HostsPath", "ResolvConfPath", "HostnamePath"):
            assert key in ours and type(ours[key]) is type(theirs[key]), key
        assert set(theirs["State"]) - {"Health"} <= set(ours["State"])
        assert ours["Image"] == theirs["Image"] == env["iid"]
        template = "{{.Name}} {{.State.Running}} {{.State.Paused}} {{.Config.Image}} " \
                   "{{json .Args}} {{.HostConfig.RestartPolicy.Name}}"
        assert it("inspect", "-f", template, "shape").stdout == \
            dockerd.docker("inspect", "-f", template, "shape").stdout
    finally:
        dockerd.docker("rm", "-f", "shape", check=False)
    port = free_port()
    it("run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    [doc] = json.loads(it("inspect", "pub").stdout)
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                           "HostPort": str(port)}]}
    assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                             "HostPort": str(port)}]}
