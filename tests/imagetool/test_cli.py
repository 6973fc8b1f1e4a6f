"""The imagetool command line, run as a user would: every verb against a private --root,
pipes for save/load/import, one-line errors with a non-zero exit, concurrent and killed
writers, and pull/push/login/logout against a real docker-registry."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

from imagetool.store import Store
from tests.imagetool.storehelp import IMAGETOOL, imagetool, read_json, rootfs_tar

BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> str:
    return rootfs_tar(str(tmp_path_factory.mktemp("rootfs")))


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / "store")


def names_in(root: str) -> list[str]:
    return sorted(r["Name"] for r in json.loads(
        imagetool(root, "images", "--format", "json").stdout))


def fails(root: str, *args: str, input: bytes | None = None) -> str:
    """Run a verb that must fail; return its single error line."""
    p = imagetool(root, *args, input=input, check=False)
    assert p.returncode != 0, f"{args} succeeded: {p.stdout!r}"
    err = p.stderr.decode().strip()
    assert err.startswith("imagetool: ") and len(err.splitlines()) == 1, err
    return err


def test_every_verb_uses_the_root_it_is_given(tmp_path, root, tarball):
    other = str(tmp_path / "other")
    digest = imagetool(root, "import", "--cmd", "/bin/sh", tarball, "busybox").stdout.decode()
    digest = digest.strip()
    assert digest.startswith("sha256:")
    assert names_in(root) == [BUSYBOX]
    assert names_in(other) == [] and not os.path.exists(other)  # reading creates nothing
    imagetool(root, "tag", "busybox", "mine:1")
    assert names_in(root) == [BUSYBOX, "docker.io/library/mine:1"]
    assert "no image busybox" in fails(other, "inspect", "busybox")
    assert "no image busybox" in fails(other, "save", "-o", str(tmp_path / "x.tar"), "busybox")
    assert "no image" in fails(other, "tag", "busybox", "x")
    archive = str(tmp_path / "a.tar")
    imagetool(root, "save", "-o", archive, "mine:1")
    assert "Loaded image: mine:1" in imagetool(other, "load", "-i", archive).stdout.decode()
    assert names_in(other) == ["docker.io/library/mine:1"]
    imagetool(other, "rmi", "mine:1")
    assert names_in(other) == [] and names_in(root) == [BUSYBOX, "docker.io/library/mine:1"]
    assert os.listdir(os.path.join(other, "blobs/sha256")) == []
    assert imagetool(root, "prune").stdout.decode().strip() == "Total reclaimed space: 0B"
    index = read_json(os.path.join(root, "index.json"))
    assert {d["digest"] for d in index["manifests"]} == {digest}


def test_images_table_json_and_filters(root, tarball):
    imagetool(root, "import", tarball, "busybox")
    imagetool(root, "tag", "busybox", "127.0.0.1:5000/team/app:v2")
    lines = imagetool(root, "images").stdout.decode().splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "CREATED", "SIZE"]
    rows = sorted(line.split()[:3] for line in lines[1:])
    short = json.loads(imagetool(root, "images", "--format", "json").stdout)[0]["Digest"][7:19]
    assert rows == [["127.0.0.1:5000/team/app", "v2", short], ["busybox", "latest", short]]
    assert lines[1].split()[-1].endswith("MB")
    [row] = json.loads(imagetool(root, "images", "--format", "json", "busybox").stdout)
    assert row["Name"] == BUSYBOX and row["Tag"] == "latest" and row["Size"] > 1_000_000
    assert row["ID"].startswith("sha256:") and row["Platform"].startswith("linux/")
    assert imagetool(root, "images", "-q").stdout.decode().split() == [short]
    assert json.loads(imagetool(root, "images", "--format", "json", "nothing").stdout) == []


def test_inspect_prints_manifest_and_config(root, tarball):
    imagetool(root, "import", "-e", "PATH=/bin", "--cmd", '["/bin/echo","hi"]', tarball,
              "busybox")
    [doc] = json.loads(imagetool(root, "inspect", "busybox").stdout)
    assert doc["Name"] == BUSYBOX
    assert doc["Config"]["config"] == {"Env": ["PATH=/bin"], "Cmd": ["/bin/echo", "hi"]}
    assert doc["Manifest"]["config"]["digest"] == doc["ID"]
    both = json.loads(imagetool(root, "inspect", doc["Digest"][7:19], "busybox:latest").stdout)
    assert [d["Digest"] for d in both] == [doc["Digest"]] * 2


def test_rmi_untags_and_deletes_what_nothing_uses(root, tarball):
    digest = imagetool(root, "import", tarball, "busybox").stdout.decode().strip()
    imagetool(root, "tag", "busybox", "second")
    err = fails(root, "rmi", digest[7:19])
    assert "2 images" in err and "-f" in err
    out = imagetool(root, "rmi", "second").stdout.decode()
    assert out.strip() == "Untagged: second:latest"  # busybox still holds every blob
    assert len(os.listdir(os.path.join(root, "blobs/sha256"))) == 3
    imagetool(root, "tag", "busybox", "second")
    out = imagetool(root, "rmi", "-f", digest[7:19]).stdout.decode().splitlines()
    assert sorted(out[:2]) == ["Untagged: busybox:latest", "Untagged: second:latest"]
    assert len([x for x in out if x.startswith("Deleted: sha256:")]) == 3
    assert os.listdir(os.path.join(root, "blobs/sha256")) == []
    assert "no image nothere" in fails(root, "rmi", "nothere")


def test_save_and_load_through_pipes(tmp_path, root, tarball):
    imagetool(root, "import", tarball, "busybox")
    other = str(tmp_path / "other")
    for fmt in ("oci", "docker"):
        saved = imagetool(root, "save", "--format", fmt, "busybox", "busybox:latest").stdout
        with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
            listed = json.load(tf.extractfile("manifest.json" if fmt == "docker"
                                              else "index.json"))
        assert len(listed if fmt == "docker" else listed["manifests"]) == 1  # named twice
        packed = gzip.compress(saved, mtime=0)  # docker load takes compressed archives too
        # stdin is a pipe: not seekable, so load must spool it
        load = subprocess.Popen([IMAGETOOL, "--root", other, "load"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = load.communicate(packed, timeout=60)
        assert load.returncode == 0, err
        assert out.decode().strip() == "Loaded image: busybox:latest"
        imagetool(other, "rmi", "busybox")
    imagetool(root, "import", "-", "from-stdin", input=open(tarball, "rb").read())
    assert names_in(root) == [BUSYBOX, "docker.io/library/from-stdin:latest"]


def test_errors_are_one_line_and_change_nothing(tmp_path, root, tarball):
    imagetool(root, "import", tarball, "busybox")
    index = open(os.path.join(root, "index.json"), "rb").read()
    junk = str(tmp_path / "junk")
    with open(junk, "w") as f:
        f.write("not a tarball\n")
    assert "not a valid tar" in fails(root, "import", junk, "x")
    assert "invalid reference" in fails(root, "import", tarball, "UPPER/Case")
    assert "invalid reference" in fails(root, "tag", "busybox", "bad name")
    assert "not a tar archive" in fails(root, "load", "-i", junk)
    assert "No such file" in fails(root, "load", "-i", str(tmp_path / "missing.tar"))
    assert "want KEY=VALUE" in fails(root, "import", "-e", "NOVALUE", tarball, "x")
    assert "not a JSON array" in fails(root, "import", "--cmd", "[oops", tarball, "x")
    assert open(os.path.join(root, "index.json"), "rb").read() == index
    assert Store(root).ingest_files() == []
    home = tmp_path / "home"
    home.mkdir()
    (home / "mine.txt").write_text("x")
    assert "not an OCI image layout" in fails(str(home), "import", tarball, "x")
    p = imagetool(root, "frobnicate", check=False)
    assert p.returncode == 2 and b"invalid choice" in p.stderr


def test_a_killed_import_names_nothing_and_prune_clears_it(root, tarball):
    imagetool(root, "import", tarball, "busybox")
    data = open(tarball, "rb").read()
    p = subprocess.Popen([IMAGETOOL, "--root", root, "import", "-", "half"],
                         stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(data[:len(data) // 2])
    p.stdin.flush()
    store = Store(root)
    deadline = time.monotonic() + 20
    while not store.ingest_files() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    p.stdin.close()
    assert names_in(root) == [BUSYBOX]
    [left] = store.ingest_files()
    imagetool(root, "prune")
    assert store.ingest_files() == [left]  # too fresh to judge
    old = time.time() - 3600
    os.utime(os.path.join(store.ingest_dir, left), (old, old))
    imagetool(root, "prune")
    assert store.ingest_files() == []
    assert names_in(root) == [BUSYBOX]


def test_concurrent_cli_writers(root, tarball):
    imagetool(root, "import", tarball, "base")
    procs = [subprocess.Popen([IMAGETOOL, "--root", root, "import", tarball, f"imp{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(3)]
    procs += [subprocess.Popen([IMAGETOOL, "--root", root, "tag", "base", f"tag{i}"],
                               stderr=subprocess.PIPE) for i in range(3)]
    procs.append(subprocess.Popen([IMAGETOOL, "--root", root, "prune"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    want = ["base"] + [f"imp{i}" for i in range(3)] + [f"tag{i}" for i in range(3)]
    assert names_in(root) == sorted(f"docker.io/library/{n}:latest" for n in want)
    assert subprocess.run(["oci-image-tool", "validate", "--type", "image", root],
                          capture_output=True).returncode == 0
    assert Store(root).ingest_files() == []


# -- registry verbs (the registry client is another module; the CLI only wires it) -----------
def test_push_pull_login_logout_through_the_cli(root, tarball, registry, docker_config):
    reg = registry("basic")
    imagetool(root, "import", tarball, "busybox")
    remote = reg.ref("team/busybox:1")
    assert "authentication required" in fails(root, "push", "-q", "busybox", remote)
    bad = fails(root, "login", "-u", reg.username, "--password-stdin", reg.host,
                input=b"wrong\n")
    assert reg.host in bad
    out = imagetool(root, "login", "-u", reg.username, "--password-stdin", reg.host,
                    input=reg.password.encode() + b"\n").stdout.decode()
    assert out.strip() == "Login Succeeded"
    assert reg.host in read_json(os.path.join(docker_config, "config.json"))["auths"]
    pushed = imagetool(root, "push", "-q", "busybox", remote).stdout.decode().strip()
    assert pushed == json.loads(imagetool(root, "inspect", "busybox").stdout)[0]["Digest"]
    imagetool(root, "rmi", "busybox")
    assert imagetool(root, "pull", "-q", remote).stdout.decode().strip() == pushed
    assert names_in(root) == [f"{reg.host}/team/busybox:1"]
    assert imagetool(root, "logout", reg.host).stdout.decode().startswith("Removing")
    assert imagetool(root, "logout", reg.host).stdout.decode().startswith("Not logged in")
    imagetool(root, "rmi", remote)
    fails(root, "pull", "-q", remote)  # credentials gone: the registry refuses
    assert names_in(root) == []


def test_prune_waits_for_a_writer_in_the_middle_of_its_work(root, tarball):
    imagetool(root, "import", tarball, "busybox")
    holder = subprocess.Popen(
        [os.path.join(os.path.dirname(IMAGETOOL), "python"), "-c",
         "import sys\nfrom imagetool.store import Store\ns = Store(sys.argv[1])\n"
         "with s.lease():\n    print(s.put_bytes(b'fetched'), flush=True)\n"
         "    sys.stdin.readline()\n", root],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    prune = None
    try:
        digest = holder.stdout.readline().strip()
        prune = subprocess.Popen([IMAGETOOL, "--root", root, "prune"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            prune.wait(timeout=1.0)
        assert Store(root).has_blob(digest)
    finally:
        holder.communicate("go\n", timeout=30)
        if prune is not None:
            out, err = prune.communicate(timeout=30)
    assert "waiting for other writers" in err
    assert f"Deleted: {digest}" in out
    assert names_in(root) == [BUSYBOX]
