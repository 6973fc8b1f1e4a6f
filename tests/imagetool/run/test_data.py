"""Named and anonymous volumes, --mount, --tmpfs and cp both ways, on real containers, the
shapes compared with docker 20.10 (a private dockerd) where it can run here."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

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
    d = tempfile.mkdtemp(prefix="itdata-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with private_network(root, "itv", 95) as bridge:
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
    for name in imagetool(env["root"], "volume", "ls", "-q").stdout.decode().split():
        imagetool(env["root"], "volume", "rm", "-f", name, check=False)


def _run(it, *args: str) -> bytes:
    return it("run", "--rm", "--network", "none", *args).stdout


def test_named_volume_keeps_data_and_is_copied_up_like_docker(env, it, dockerd):
    assert it("volume", "create", "data1").stdout == b"data1\n"
    _run(it, "-v", "data1:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert _run(it, "-v", "data1:/data:ro", "busybox", "cat", "/data/f") == b"kept\n"
    p = imagetool(env["root"], "run", "--rm", "--network", "none", "-v", "data1:/data:ro",
                  "busybox", "sh", "-c", "echo x > /data/g", check=False)
    assert p.returncode != 0  # read-only
    # a new volume over an image directory starts with the image's files, as in docker
    ours = _run(it, "-v", "fresh:/etc", "busybox", "ls", "/etc").split()
    dockerd.docker("volume", "create", "fresh")
    try:
        theirs = dockerd.docker("run", "--rm", "--network", "none", "-v", "fresh:/etc",
                                "busybox", "ls", "/etc").stdout.split()
    finally:
        dockerd.docker("volume", "rm", "fresh", check=False)
    image_files = {b"group", b"passwd"}
    assert image_files <= set(ours) and image_files <= set(theirs)
    assert it("volume", "ls").stdout.decode().splitlines()[0] == \
        dockerd.docker("volume", "ls").stdout.decode().splitlines()[0]
    [doc] = json.loads(it("volume", "inspect", "data1").stdout)
    dockerd.docker("volume", "create", "data1")
    try:
        [theirs_doc] = json.loads(dockerd.docker("volume", "inspect", "data1").stdout)
    finally:
        dockerd.docker("volume", "rm", "data1", check=False)
    assert set(doc) == set(theirs_doc)
    assert os.path.isfile(os.path.join(doc["Mountpoint"], "f"))


def test_volume_in_use_anonymous_and_prune(env, it):
    it("run", "-d", "--name", "holder", "--network", "none", "-v", "busy:/b", "busybox",
       "sleep", "60")
    p = imagetool(env["root"], "volume", "rm", "busy", check=False)
    assert p.returncode == 1 and "volume is in use" in p.stderr.decode()
    [m] = json.loads(it("inspect", "holder").stdout)[0]["Mounts"]
    assert (m["Type"], m["Name"], m["Destination"], m["RW"]) == ("volume", "busy", "/b", True)
    it("rm", "-f", "holder")
    before = set(it("volume", "ls", "-q").stdout.split())
    _run(it, "-v", "/anon", "busybox", "true")  # --rm takes its anonymous volume along
    it("run", "--name", "keeper", "--network", "none", "--mount", "type=volume,target=/a2",
       "busybox", "true")
    [anon] = set(it("volume", "ls", "-q").stdout.split()) - before
    assert len(anon) == 64
    it("volume", "prune")
    assert anon.decode() in it("volume", "ls", "-q").stdout.decode()  # keeper still uses it
    it("rm", "-v", "keeper")
    assert set(it("volume", "ls", "-q").stdout.split()) == before
    assert it("volume", "rm", "busy").stdout == b"busy\n"


def test_mount_and_tmpfs(env, it):
    src = os.path.join(env["dir"], "bindsrc")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "hello"), "w") as f:
        f.write("from the host\n")
    out = _run(it, "--mount", f"type=bind,source={src},target=/in,readonly",
               "--tmpfs", "/scratch:size=1m", "--mount", "type=tmpfs,target=/t2,tmpfs-size=2m",
               "busybox", "sh", "-c", "cat /in/hello; grep -E ' /(scratch|t2|in) ' "
               "/proc/mounts | cut -d' ' -f2,4 | sort").decode()
    lines = out.splitlines()
    assert lines[0] == "from the host"
    opts = dict(line.split(" ", 1) for line in lines[1:])
    assert opts["/in"].startswith("ro,") and "size=1024k" in opts["/scratch"]
    assert "size=2048k" in opts["/t2"] and "noexec" in opts["/t2"]
    for bad, text in ((["--mount", "type=nfs,target=/x"], "type must be"),
                      (["--mount", "type=bind,target=/x"], "absolute source"),
                      (["--mount", "type=volume,target=/x,bogus=1"], "unknown option bogus"),
                      (["--tmpfs", "relative"], "must be absolute"),
                      (["-v", "v1:/x", "--tmpfs", "/x"], "duplicate mount point")):
        p = imagetool(env["root"], "run", "--rm", "--network", "none", *bad, "busybox",
                      "true", check=False)
        assert p.returncode == 125 and text in p.stderr.decode(), p.stderr.decode()


def test_cp_both_ways(env, it, tmp_path):
    it("run", "-d", "--name", "cpt", "--network", "none", "-v", "cpvol:/vol", "busybox",
       "sh", "-c", "mkdir -p /work/sub; echo a > /work/a; echo b > /work/sub/b; "
       "ln -s /etc/passwd /work/link; sleep 60")
    it("exec", "cpt", "sh", "-c", "while [ ! -e /work/link ]; do sleep 0.05; done")
    it("cp", "cpt:/work", str(tmp_path))  # into an existing directory: keeps its name
    assert (tmp_path / "work" / "sub" / "b").read_text() == "b\n"
    assert os.readlink(tmp_path / "work" / "link") == "/etc/passwd"  # not followed
    it("cp", "cpt:/work/.", str(tmp_path / "content"))  # new name: the content
    assert sorted(os.listdir(tmp_path / "content")) == ["a", "link", "sub"]
    it("cp", "cpt:/work/a", str(tmp_path / "renamed"))
    assert (tmp_path / "renamed").read_text() == "a\n"
    (tmp_path / "up.txt").write_text("up\n")
    it("cp", str(tmp_path / "up.txt"), "cpt:/vol/")  # into a volume mounted in the container
    assert it("exec", "cpt", "cat", "/vol/up.txt").stdout == b"up\n"
    it("cp", str(tmp_path / "up.txt"), "cpt:/work/link2")
    assert it("exec", "cpt", "cat", "/work/link2").stdout == b"up\n"
    tar = subprocess.run([IMAGETOOL, "--root", env["root"], "cp", "cpt:/work/sub", "-"],
                         capture_output=True, timeout=60, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert sorted(tf.getnames()) == ["sub", "sub/b"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"from a tar\n"
        ti = tarfile.TarInfo("t.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    imagetool(env["root"], "cp", "-", "cpt:/work", input=buf.getvalue())
    assert it("exec", "cpt", "cat", "/work/t.txt").stdout == b"from a tar\n"
    # a symlink in the container never leads the copy to the host's files
    it("exec", "cpt", "ln", "-s", "/", "/work/root")
    it("cp", str(tmp_path / "up.txt"), "cpt:/work/root/tmp/")
    assert it("exec", "cpt", "cat", "/tmp/up.txt").stdout == b"up\n"
    assert not os.path.exists("/tmp/up.txt") or open("/tmp/up.txt").read() != "up\n"
    for args, text in ((["cpt:/nothere", str(tmp_path)], "could not find"),
                       ([str(tmp_path / "up.txt"), str(tmp_path / "x")], "exactly one"),
                       (["nosuch:/x", str(tmp_path)], "no such container")):
        p = imagetool(env["root"], "cp", *args, check=False)
        assert p.returncode != 0 and text in p.stderr.decode(), p.stderr.decode()


def test_cp_matches_docker(env, it, dockerd, tmp_path):
    script = "mkdir -p /w/d; echo x > /w/d/f; sleep 60"
    it("run", "-d", "--name", "cpo", "--network", "none", "busybox", "sh", "-c", script)
    dockerd.docker("run", "-d", "--name", "dcpo", "--network", "none", "busybox", "sh", "-c",
                   script)
    try:
        it("exec", "cpo", "sh", "-c", "while [ ! -e /w/d/f ]; do sleep 0.05; done")
        dockerd.docker("exec", "dcpo", "sh", "-c", "while [ ! -e /w/d/f ]; do sleep 0.05; done")
        for src, name in (("/w/d", "dir"), ("/w/d/.", "content"), ("/w/d/f", "file")):
            (tmp_path / f"o-{name}").mkdir()
            (tmp_path / f"t-{name}").mkdir()
            it("cp", f"cpo:{src}", str(tmp_path / f"o-{name}"))
            dockerd.docker("cp", f"dcpo:{src}", str(tmp_path / f"t-{name}"))
            walk = [sorted((os.path.relpath(r, tmp_path / f"{w}-{name}"), sorted(fs))
                           for r, _ds, fs in os.walk(tmp_path / f"{w}-{name}"))
                    for w in ("o", "t")]
            assert walk[0] == walk[1], (src, walk)
    finally:
        dockerd.docker("rm", "-f", "dcpo", check=False)


def test_diff_export_commit_like_docker(env, it, dockerd, tmp_path):
    script = ("echo new > /newfile; echo changed >> /etc/passwd; rm /bin/vi; mkdir -p /tmp/x; "
              "touch /ready; sleep 60")
    it("run", "-d", "--name", "fsd", "--network", "none", "busybox", "sh", "-c", script)
    dockerd.docker("run", "-d", "--name", "dfsd", "--network", "none", "busybox", "sh", "-c",
                   script)
    try:
        it("exec", "fsd", "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done")
        dockerd.docker("exec", "dfsd", "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done")
        ours = it("diff", "fsd").stdout.decode().splitlines()
        theirs = dockerd.docker("diff", "dfsd").stdout.decode().splitlines()
        assert sorted(ours) == sorted(theirs), (ours, theirs)  # docker: in no set order
        out = tmp_path / "fs.tar"
        it("export", "-o", str(out), "fsd")
        with tarfile.open(out) as tf:
            names = set(tf.getnames())
        assert {"newfile", "bin/busybox", "tmp/x"} <= names and "bin/vi" not in names
        iid = it("commit", "-m", "my change", "fsd", "committed:1").stdout.decode().strip()
        assert iid.startswith("sha256:")
        assert it("inspect", "-f", "{{.State.Status}}", "fsd").stdout == b"running\n"
        out = _run(it, "committed:1", "sh", "-c", "cat /newfile; test -e /bin/vi || echo gone")
        assert out == b"new\ngone\n"
        hist = it("history", "--format", "{{.Comment}}", "committed:1").stdout.decode()
        assert hist.splitlines()[0] == "my change"
    finally:
        dockerd.docker("rm", "-f", "dfsd", check=False)
        imagetool(env["root"], "rmi", "committed:1", check=False)
