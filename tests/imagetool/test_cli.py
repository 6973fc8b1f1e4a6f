"""The imagetool command line, run as a user would: every verb against a private --root,
pipes for save/load/import, one-line errors with a non-zero exit, concurrent and killed
writers, and pull/push/login/logout against a real docker-registry."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
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
    """`images --format json` is one object a line (docker's {{json .}})."""
    return sorted(json.loads(line)["Name"] for line in
                  imagetool(root, "images", "--format", "json").stdout.decode().splitlines())


def fails(root: str, *args: str, input: bytes | None = None) -> str:
    """Run a verb that must fail; return its single error line."""
    p = imagetool(root, *args, input=input, check=False)
    assert p.returncode != 0, f"{args} succeeded: {p.stdout!r}"
    err = p.stderr.decode().strip()
    assert err.startswith("imagetool: ") and len(err.splitlines()) == 1, err
    return err


def test_every_verb_uses_the_root_it_is_given(tmp_path, root, tarball):
    other = str(tmp_path / "other")
    iid = imagetool(root, "import", "--cmd", "/bin/sh", tarball, "busybox").stdout.decode()
    iid = iid.strip()  # the image ID (config digest), as docker import prints it
    assert iid.startswith("sha256:")
    digest = Store(root).get_image(BUSYBOX)["digest"]
    assert Store(root).read_json(digest)["config"]["digest"] == iid
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


def _json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_images_table_json_and_filters(root, tarball):
    """docker's table (IMAGE ID = the config digest, uncompressed SIZE), newest first,
    `--format json` one object a line, -q image IDs once each, --digests, --no-trunc."""
    iid = imagetool(root, "import", tarball, "busybox").stdout.decode().strip()
    imagetool(root, "tag", "busybox", "127.0.0.1:5000/team/app:v2")
    time.sleep(1.1)
    iid2 = imagetool(root, "import", "--cmd", "sh", tarball, "newer").stdout.decode().strip()
    lines = imagetool(root, "images").stdout.decode().splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["newer", "latest", iid2[7:19]]  # newest first
    rows = sorted(line.split()[:3] for line in lines[2:])
    assert rows == [["127.0.0.1:5000/team/app", "v2", iid[7:19]],
                    ["busybox", "latest", iid[7:19]]]
    store = Store(root)
    manifest = store.read_json(store.get_image(BUSYBOX))
    compressed = sum(x["size"] for x in manifest["layers"])
    [row] = _json_lines(imagetool(root, "images", "--format", "json", "busybox").stdout)
    assert row["Name"] == BUSYBOX and row["Tag"] == "latest" and row["ID"] == iid[7:19]
    assert row["Size"].endswith("MB") and row["Platform"].startswith("linux/")
    size_mb = float(row["Size"][:-2])
    assert size_mb * 1e6 > compressed * 1.3  # the unpacked files, not the gzip blob
    assert imagetool(root, "images", "-q").stdout.decode().split() == [iid2[7:19], iid[7:19]]
    assert imagetool(root, "images", "-q", "--no-trunc", "busybox").stdout.decode().split() \
        == [iid]
    assert imagetool(root, "images", "--format", "json", "nothing").stdout == b""
    out = imagetool(root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                    "busybox").stdout.decode()
    assert out == f"busybox:latest {iid[7:19]}\n"
    table = imagetool(root, "images", "--format", "table {{.Repository}}\t{{.Size}}",
                      "newer").stdout.decode().splitlines()
    assert table[0].split() == ["REPOSITORY", "SIZE"] and table[1].startswith("newer ")
    dig = imagetool(root, "images", "--digests", "busybox").stdout.decode().splitlines()
    assert "DIGEST" in dig[0] and store.get_image(BUSYBOX)["digest"] in dig[1]
    assert "unclosed action" in fails(root, "images", "--format", "{{.ID")


def test_inspect_in_dockers_shape(root, tarball):
    iid = imagetool(root, "import", "-e", "PATH=/bin", "--cmd", '["/bin/echo","hi"]', tarball,
                    "busybox").stdout.decode().strip()
    imagetool(root, "tag", "busybox", "other:2")
    [doc] = json.loads(imagetool(root, "inspect", "busybox").stdout)
    assert doc["Id"] == iid and doc["Name"] == BUSYBOX
    assert doc["RepoTags"] == ["busybox:latest", "other:2"]
    assert doc["Config"] == {"Env": ["PATH=/bin"], "Cmd": ["/bin/echo", "hi"]}
    assert doc["ImageConfig"]["config"] == doc["Config"]
    assert doc["RootFS"]["Type"] == "layers" and len(doc["RootFS"]["Layers"]) == 1
    assert doc["Manifest"]["config"]["digest"] == doc["Id"] and doc["Os"] == "linux"
    both = json.loads(imagetool(root, "inspect", iid[7:19], "busybox:latest").stdout)
    assert [d["Id"] for d in both] == [iid] * 2
    out = imagetool(root, "inspect", "-f", "{{.Id}} {{.Config.Env}} {{json .RepoTags}}",
                    "busybox").stdout.decode()
    assert out == f'{iid} [PATH=/bin] ["busybox:latest","other:2"]\n'


def test_an_image_id_shared_by_names_is_one_image(tmp_path, root, tarball):
    """Bug 1: after `tag X Y` the ID still names the image in every verb."""
    iid = imagetool(root, "import", "--cmd", "sh", tarball, "byid:1").stdout.decode().strip()
    imagetool(root, "tag", "byid:1", "127.0.0.1:5055/byid:1")
    for text in (iid[7:19], iid, iid[:15]):
        [doc] = json.loads(imagetool(root, "inspect", text).stdout)
        assert doc["Id"] == iid
    imagetool(root, "tag", iid[7:19], "third")
    imagetool(root, "save", "-o", str(tmp_path / "x.tar"), iid[7:19])
    imagetool(root, "import", tarball, "differs")  # a second image: same layer, other config
    assert "no image" in fails(root, "inspect", "feedface0000")


def test_errors_name_their_verb_and_usage_is_the_verbs(root):
    err = imagetool(root, "imgaes", check=False)
    assert err.returncode == 2 and "did you mean 'images'" in err.stderr.decode()
    p = imagetool(root, "images", "--bogus", check=False)
    assert p.returncode == 2
    assert "usage: imagetool images" in p.stderr.decode() and "--bogus" in p.stderr.decode()
    p = imagetool(root, "run", "--bogus", "busybox", check=False)
    assert p.returncode == 125 and "usage: imagetool run" in p.stderr.decode()
    p = imagetool(root, "inspect", "busybox", check=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("imagetool: inspect: ")
    p = imagetool(root, "volume", "rm", "nosuch", check=False)  # a group's verb, as typed
    assert p.returncode == 1 and p.stderr.decode().startswith("imagetool: volume rm: ")


def test_every_flag_has_a_help_line():
    """Each option of each verb says what it does (`imagetool VERB --help`); the trust
    verbs (key sign verify attest ...) are another module's and not checked here."""
    import argparse

    from imagetool.cli import build_parser
    from imagetool.run.usage import _subparsers
    bare = []
    trust = {"key", "sign", "verify", "artifact", "attest", "verify-attestation"}
    for name, sp in _subparsers(build_parser()).items():
        if name in trust:
            continue
        for action in sp._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction) \
                    and not action.help:
                bare.append(f"{name} {action.option_strings[0]}")
    assert bare == []


def test_rmi_untags_and_deletes_what_nothing_uses(root, tarball):
    iid = imagetool(root, "import", tarball, "busybox").stdout.decode().strip()
    imagetool(root, "tag", "busybox", "second")
    err = fails(root, "rmi", iid[7:19])
    assert "2 images" in err and "-f" in err
    out = imagetool(root, "rmi", "second").stdout.decode()
    assert out.strip() == "Untagged: second:latest"  # busybox still holds every blob
    assert len(os.listdir(os.path.join(root, "blobs/sha256"))) == 3
    imagetool(root, "tag", "busybox", "second")
    out = imagetool(root, "rmi", "-f", iid[7:19]).stdout.decode().splitlines()
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
    assert p.returncode == 2 and b"not an imagetool verb" in p.stderr


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
    out = imagetool(root, "pull", remote).stdout.decode().splitlines()  # docker's last lines
    assert out == [f"Digest: {pushed}", f"Status: Downloaded image for {remote}", remote]
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


def test_ctrl_c_during_save_is_one_line_and_leaves_nothing(tmp_path, root):
    """Bug 5: SIGINT while `save -o` writes a large archive: `imagetool: interrupted`, 130,
    no 'Exception ignored ... write to closed file', no temp file beside the target."""
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(os.urandom(160 << 20))
    tar = str(tmp_path / "big.tar")
    with tarfile.open(tar, "w") as tf:
        tf.add(str(big), arcname=".")
    (big / "blob.bin").unlink()
    imagetool(root, "import", "--cmd", "sh", tar, "big:1")
    os.unlink(tar)
    out = tmp_path / "outdir"
    out.mkdir()
    p = subprocess.Popen([IMAGETOOL, "--root", root, "save", "-o", str(out / "big.tar"),
                          "big:1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            temps = [f for f in out.iterdir() if f.name.startswith(".big.tar.")]
            if temps and temps[0].stat().st_size > 8 << 20:
                break
            time.sleep(0.02)
        assert p.poll() is None, "save finished before it could be interrupted"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and err.decode() == "imagetool: interrupted\n", err.decode()
    assert list(out.iterdir()) == []


def test_build_without_tag_keeps_a_none_image_and_warns_once(tmp_path, root, tarball):
    """docker allows build without -t: the image is kept as <none>, usable by its ID;
    tagging it names it (no <none> row left). Bug 6: a broken JSON CMD warns once."""
    imagetool(root, "import", "--cmd", "sh", tarball, "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nCMD ["httpd", "-f"\nRUN echo x > /x\n')
    p = imagetool(root, "build", "--pull-never", str(ctx), timeout=300)
    out = p.stdout.decode()
    assert b"Reading build context" not in p.stderr  # a small context: nothing to say
    iid = out.strip().splitlines()[-1]
    assert out.count("not a valid JSON array") == 1, out
    assert iid.startswith("sha256:")
    lines = imagetool(root, "images").stdout.decode().splitlines()
    assert lines[1].split()[:3] == ["<none>", "<none>", iid[7:19]]
    [doc] = json.loads(imagetool(root, "inspect", iid[7:19]).stdout)
    assert doc["Id"] == iid and doc["RepoTags"] == []
    imagetool(root, "prune")  # a <none> image is an image: its blobs stay
    imagetool(root, "tag", iid[7:19], "named:1")
    assert [line.split()[0] for line in imagetool(root, "images").stdout.decode()
            .splitlines()[1:]] == ["named", "busybox"]
    assert json.loads(imagetool(root, "inspect", "named:1").stdout)[0]["Id"] == iid


def test_a_large_build_context_is_announced(tmp_path, root, tarball):
    imagetool(root, "import", "--cmd", "sh", tarball, "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY Dockerfile /\n")
    with open(ctx / "big.bin", "wb") as f:
        f.truncate(60_000_000)  # sparse: big to read, nothing on disk
    p = imagetool(root, "build", "-t", "ctx:1", "--pull-never", str(ctx), timeout=300)
    assert "Reading build context: 60MB" in p.stderr.decode()
    assert b"Reading" not in imagetool(root, "build", "-q", "-t", "ctx:1", "--pull-never",
                                       str(ctx), timeout=300).stderr
