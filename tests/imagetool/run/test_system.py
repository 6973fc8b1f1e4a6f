"""history, version, info, system df/prune, events, logs --since/--until, run -P: on a
private store, the table shapes compared with docker 20.10 (a private dockerd)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

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
    d = tempfile.mkdtemp(prefix="itsys-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        ctx = os.path.join(d, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM busybox\nEXPOSE 80 8080/udp\nRUN echo made > /made\n")
        imagetool(root, "build", "-q", "--pull-never", "-t", "exposer:1", ctx, timeout=300)
        with private_network(root, "its", 97) as bridge:
            try:
                yield {"dir": d, "root": root, "bridge": bridge}
            finally:
                remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd(env):
    with running_dockerd() as d:
        save = subprocess.run([IMAGETOOL, "--root", env["root"], "save", "busybox",
                               "exposer:1"], capture_output=True, timeout=120, check=True)
        p = subprocess.run([DOCKER or "docker", "load"], input=save.stdout, env=d.env,
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        yield d


@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def test_history_like_docker(env, it, dockerd):
    ours = it("history", "exposer:1").stdout.decode().splitlines()
    theirs = dockerd.docker("history", "exposer:1").stdout.decode().splitlines()
    head = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert re.split(r"\s{2,}", ours[0]) == re.split(r"\s{2,}", theirs[0]) == head
    assert len(ours) == len(theirs)
    assert ours[1].split()[0] == theirs[1].split()[0]  # the image ID on the newest step
    assert [line.split()[0] for line in ours[2:]] == ["<missing>"] * (len(ours) - 2)
    assert it("image", "history", "-q", "exposer:1").stdout.decode().split() == \
        dockerd.docker("history", "-q", "exposer:1").stdout.decode().split()


def test_version_info_and_system_df(env, it, dockerd):
    assert it("version", "-f", "{{.Runtime.Name}}").stdout == b"pyrunc\n"
    it("run", "-d", "--name", "inf", "--network", "none", "busybox", "sleep", "60")
    info = json.loads(it("info", "-f", "{{json .}}").stdout)
    assert info["ContainersRunning"] == 1 and info["Images"] == 2
    assert info["NCPU"] == os.cpu_count()
    assert b"Containers: 1\n Running: 1\n" in it("system", "info").stdout
    ours = it("system", "df").stdout.decode().splitlines()
    theirs = dockerd.docker("system", "df").stdout.decode().splitlines()
    assert ours[0] == theirs[0] and [x.split()[0] for x in ours] == \
        [x.split()[0] for x in theirs]
    images = ours[1].split()
    assert images[1:3] == ["2", "1"]  # two images, one used by a container


def test_events_and_logs_since_until(env, it):
    start = time.time()
    it("run", "--name", "evs", "--network", "none", "busybox", "sh", "-c",
       "echo one; sleep 1.2; echo two")
    it("rename", "evs", "evs2")
    it("rm", "evs2")
    out = it("events", "--since", str(start - 0.1), "--until", str(time.time()),
             "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.decode()
    mine = [line for line in out.splitlines() if line.split()[-1] in ("evs", "evs2")]
    assert mine == ["create evs", "start evs", "die evs", "rename evs2", "destroy evs2"]
    it("run", "--name", "lg", "--network", "none", "busybox", "sh", "-c",
       "echo one; sleep 1.5; echo two")
    stamps = it("logs", "-t", "lg").stdout.decode().splitlines()
    second = stamps[1].split()[0]
    assert it("logs", "--since", second, "lg").stdout == b"two\n"
    assert it("logs", "--until", stamps[0].split()[0], "lg").stdout == b"one\n"
    assert it("logs", "--since", "1h", "lg").stdout == b"one\ntwo\n"
    p = imagetool(env["root"], "logs", "--since", "yesterday", "lg", check=False)
    assert p.returncode == 1 and "invalid time" in p.stderr.decode()


def test_publish_all(env, it):
    it("run", "-d", "--name", "pa", "-P", "exposer:1", "sleep", "60")
    lines = sorted(it("port", "pa").stdout.decode().splitlines())
    assert [x.split(" -> ")[0] for x in lines] == ["80/tcp", "8080/udp"]
    assert all(x.split(":")[-1].isdigit() and int(x.split(":")[-1]) > 0 for x in lines)


def test_system_prune(env, it):
    it("run", "--name", "old", "--network", "none", "busybox", "true")
    out = it("system", "prune", "-f").stdout.decode()
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    assert it("ps", "-aq").stdout == b""
    assert it("images", "-q", "busybox").stdout != b""  # images stay
