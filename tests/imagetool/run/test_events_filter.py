"""events --filter and --since/--until as docker 20.10 takes them: the same story run by
imagetool (a private store) and a private dockerd, then the same filters on both logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.imagetool.storehelp import (
    DOCKER,
    IMAGETOOL,
    imagetool,
    remove_containers,
    rootfs_tar,
    running_dockerd,
    unmount_under,
)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.timeout(600)]

FMT = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"


@pytest.fixture(scope="module")
def stories():
    """Both tools run: fa and fb created, run, removed; yields the two event readers and
    the ids of fb (ours, docker's)."""
    d = tempfile.mkdtemp(prefix="itevf-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with running_dockerd() as dk:
            save = subprocess.run([IMAGETOOL, "--root", root, "save", "busybox"],
                                  capture_output=True, timeout=120, check=True)
            p = subprocess.run([DOCKER or "docker", "load"], input=save.stdout, env=dk.env,
                               capture_output=True, timeout=120)
            assert p.returncode == 0, p.stderr.decode()
            start = time.time()
            ids = []
            for tool in (lambda *a: imagetool(root, *a), dk.docker):
                for name in ("fa", "fb"):
                    tool("run", "--name", name, "--network", "none", "busybox", "true")
                ids.append(tool("inspect", "-f", "{{.Id}}", "fb").stdout.decode().strip())
                tool("rm", "fa")  # one at a time: docker's rm of several runs in parallel
                tool("rm", "fb")
            time.sleep(1.1)  # docker's --until is whole seconds in its log's past
            end = str(time.time())

            def ours(*a: str) -> subprocess.CompletedProcess:
                return imagetool(root, "events", *a, check=False, timeout=30)

            def theirs(*a: str) -> subprocess.CompletedProcess:
                return dk.docker("events", *a, check=False, timeout=30)
            yield {"ours": ours, "theirs": theirs, "ids": ids, "since": str(start),
                   "until": end}
    finally:
        remove_containers(root)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def _both(s, *flt: str) -> tuple[list[str], list[str]]:
    args = ("--since", s["since"], "--until", s["until"], "--format", FMT, *flt)
    got = []
    for p in (s["ours"](*args), s["theirs"](*args)):
        assert p.returncode == 0, p.stderr.decode()
        got.append(p.stdout.decode().splitlines())
    return got[0], got[1]


@pytest.mark.parametrize("flt", [
    ("--filter", "container=fa", "--filter", "event=start", "--filter", "event=die"),
    ("--filter", "event=destroy",),
    ("--filter", "type=container", "--filter", "event=create"),
    ("--filter", "type=image",),
    ("--filter", "container=fa", "--filter", "container=fb", "--filter", "event=die"),
    ("--filter", "image=busybox", "--filter", "event=start"),
    ("--filter", "image=busybox:latest", "--filter", "event=destroy"),
    ("--filter", "image=nosuch", "--filter", "event=destroy"),
    ("--filter", "image=busybox", "--filter", "image=nosuch", "--filter", "event=die"),
    ("--filter", "container=nosuch",),
    ("--filter", "label=who=nosuch",),  # (containers have no labels yet: run has no --label)
])
def test_filter_like_docker(stories, flt):
    ours, theirs = _both(stories, *flt)
    assert ours == theirs


def test_container_id_prefix(stories):
    mine, dockers = stories["ids"]
    ours = _both(stories, "--filter", f"container={mine[:10]}", "--filter", "event=create")[0]
    theirs = _both(stories, "--filter", f"container={dockers[:10]}", "--filter",
                   "event=create")[1]
    assert ours == theirs == ["container create fb"]


def test_since_as_go_duration(stories):
    for since in ("1.5h", "1h30m", "90m", "5400s"):
        ours, theirs = _both(dict(stories, since=since), "--filter", "event=destroy")
        assert ours == theirs == ["container destroy fa", "container destroy fb"]


def test_bad_filter_refused(stories):
    """A filter without '=' is refused by both; an unknown key too by us (docker 20.10
    ignores it silently, so a typo would show every event)."""
    ours = stories["ours"]("--until", "1", "--filter", "container")
    theirs = stories["theirs"]("--until", "1", "--filter", "container")
    assert ours.returncode != 0 and theirs.returncode != 0
    for p in (ours, theirs):
        assert "bad format of filter" in p.stderr.decode()
    ours = stories["ours"]("--until", "1", "--filter", "foo=1")
    assert ours.returncode == 1 and ours.stdout == b""
    assert ours.stderr.decode() == "imagetool: events: --filter: invalid filter 'foo'\n"
