"""Interop with docker (dockerd from Debian, a private one: its own dirs and socket, stopped by
pid): examples/app built by our builder and by `docker build` (the legacy builder of docker
20.10, base busybox loaded into dockerd from our `imagetool save --format docker`) gives the
same files (names, types, modes, owners, symlink targets, contents) and the same config
(Env, WorkingDir, Cmd, ExposedPorts). Docker's image is compared twice: through `docker save`
(loaded and unpacked by us) and through `docker create` + `docker export` (docker's own
files, like /.dockerenv and /etc/hosts, ignored). Then our image, saved in docker format,
loads into docker with the same image ID and runs under dockerd's default runtime, runc.
Skipped, with the reason, only when dockerd is not installed or cannot start here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from imagetool.store import Store
from tests.imagetool.storehelp import DOCKER, DOCKERD, Dockerd, imagetool, rootfs_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
APP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples",
                                   "app"))
# What `docker create` adds to every container's filesystem (its init layer), not the image's.
DOCKER_OWN = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab",
              "dev", "proc", "sys"}


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itbinterop-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        yield {"dir": d, "root": root}
    finally:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if d in line]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd():
    if not DOCKERD or not DOCKER:
        pytest.skip("docker.io (dockerd) is not installed")
    d = Dockerd()
    try:
        d.start()
    except RuntimeError as e:
        d.stop()
        pytest.skip(f"dockerd cannot start here: {e}")
    try:
        yield d
    finally:
        # containers first (docker run --rm and our docker rm should have done it already)
        ids = d.docker("ps", "-aq", check=False).stdout.decode().split()
        if ids:
            d.docker("rm", "-f", *ids, check=False)
        left = d.stop()
    assert not left, f"dockerd left processes behind: {left}"


def _skipped(rel: str, skip: set[str]) -> bool:
    return rel in skip or rel.split("/")[0] in skip


def _tree(root: str, skip: set[str] | None = None) -> dict[str, tuple]:
    """rel path -> (type, mode, uid, gid, symlink target or sha256 of the contents)."""
    skip = skip or set()
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if _skipped(rel, skip):
                continue
            st = os.lstat(full)
            what: str | None = None
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, what)
        dirnames[:] = [x for x in dirnames
                       if not _skipped(os.path.relpath(os.path.join(dirpath, x), root), skip)]
    return out


def _tar_tree(path: str, skip: set[str]) -> dict[str, tuple]:
    """The same from a `docker export` tar (hard links resolved to their target's contents)."""
    out: dict[str, tuple] = {}
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        by_name = {m.name.strip("./").rstrip("/"): m for m in members}
        for m in members:
            rel = m.name.removeprefix("./").rstrip("/")
            if not rel or _skipped(rel, skip):
                continue
            what: str | None = None
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}.get(
                m.type, stat.S_IFREG if m.isreg() or m.islnk() else -1)
            if m.issym():
                what = m.linkname
            elif m.isreg() or m.islnk():
                target = by_name[m.linkname.removeprefix("./")] if m.islnk() else m
                f = tf.extractfile(target)
                assert f is not None
                what = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (kind, m.mode & 0o7777, m.uid, m.gid, what)
    return out


def _unpack(root: str, name: str, bundle: str) -> str:
    imagetool(root, "unpack", name, bundle)
    return os.path.join(bundle, "rootfs")


def _config(store: Store, name: str) -> dict:
    desc = store.get_image(name)
    assert desc is not None, name
    manifest = store.read_json(desc)
    return store.read_json(manifest["config"])


def _diff(a: dict[str, tuple], b: dict[str, tuple]) -> list[str]:
    out = [f"only ours: {k}" for k in sorted(a.keys() - b.keys())]
    out += [f"only docker's: {k}" for k in sorted(b.keys() - a.keys())]
    out += [f"{k}: ours {a[k]} docker's {b[k]}" for k in sorted(a.keys() & b.keys())
            if a[k] != b[k]]
    return out


def test_docker_build_and_ours_agree_and_our_image_runs_in_docker(env, dockerd):
    d, root = env["dir"], env["root"]
    store = Store(root)
    # ours
    imagetool(root, "build", "-q", "-t", "app:latest", APP)
    # docker's, on the same busybox (our docker-format save of it)
    base = os.path.join(d, "busybox.tar")
    imagetool(root, "save", "--format", "docker", "-o", base, "busybox:latest")
    dockerd.docker("load", "-i", base)
    dockerd.env["DOCKER_BUILDKIT"] = "0"
    p = dockerd.docker("build", "--network", "none", "-t", "dapp:latest", APP, check=False,
                       timeout=300)
    assert p.returncode == 0, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]

    # the config
    ours_conf = _config(store, "docker.io/library/app:latest")["config"]
    [info] = json.loads(dockerd.docker("image", "inspect", "dapp:latest").stdout)
    theirs_conf = info["Config"]
    for key in ("Env", "WorkingDir", "Cmd", "ExposedPorts"):
        assert ours_conf.get(key) == theirs_conf.get(key), key
    assert "GREETING=hello from imagetool build" in ours_conf["Env"]

    # the files: docker save -> our load -> our unpack, against our unpack of ours
    ours = _tree(_unpack(root, "app:latest", os.path.join(d, "b-ours")))
    saved = os.path.join(d, "dapp.tar")
    dockerd.docker("save", "-o", saved, "dapp:latest")
    theirs_root = os.path.join(d, "theirs-store")
    imagetool(theirs_root, "load", "-i", saved)
    theirs = _tree(_unpack(theirs_root, "dapp:latest", os.path.join(d, "b-theirs")))
    assert not _diff(ours, theirs), "\n".join(_diff(ours, theirs)[:40])
    www = {k: v for k, v in ours.items() if k.startswith("srv/www/")}
    assert set(www) == {"srv/www/index.html", "srv/www/health.txt"}
    with open(os.path.join(d, "b-ours", "rootfs", "srv", "www", "index.html")) as f:
        assert "<p>hello from imagetool build</p>" in f.read()

    # and through docker create + docker export, docker's own files left out
    cid = dockerd.docker("create", "dapp:latest").stdout.decode().strip()
    exported = os.path.join(d, "dapp-export.tar")
    try:
        dockerd.docker("export", "-o", exported, cid)
    finally:
        dockerd.docker("rm", "-f", cid, check=False)
    ours_src = _tree(os.path.join(d, "b-ours", "rootfs"), DOCKER_OWN)
    theirs_exp = _tar_tree(exported, DOCKER_OWN)
    assert not _diff(ours_src, theirs_exp), "\n".join(_diff(ours_src, theirs_exp)[:40])

    # our image in docker: the same image ID, and it runs under runc
    mine = os.path.join(d, "app.tar")
    imagetool(root, "save", "--format", "docker", "-o", mine, "app:latest")
    dockerd.docker("rmi", "dapp:latest")
    out = dockerd.docker("load", "-i", mine).stdout.decode()
    assert "Loaded image: app:latest" in out
    [info] = json.loads(dockerd.docker("image", "inspect", "app:latest").stdout)
    assert info["Id"] == store.read_json(store.get_image("docker.io/library/app:latest"))[
        "config"]["digest"]
    runtime = dockerd.docker("info", "--format", "{{.DefaultRuntime}}").stdout.decode().strip()
    assert runtime == "runc"
    p = dockerd.docker("run", "--rm", "--network", "none", "app:latest", "cat",
                       "/srv/www/health.txt", check=False, timeout=120)
    assert p.returncode == 0, p.stderr.decode() + dockerd.log_tail()
    assert p.stdout.decode() == "ok\n"
    assert dockerd.docker("ps", "-aq").stdout.decode().strip() == ""
