"""Interop with docker (dockerd from Debian, a private one: its own dirs and socket, stopped by
pid): examples/app built by our builder and by `docker build` (the legacy builder of docker
20.10, base busybox loaded into dockerd from our `imagetool save --format docker`) gives the
same files (names, types, modes, owners, symlink targets, contents) and the same config
(Env, WorkingDir, Cmd, ExposedPorts). Docker's image is compared twice: through `docker save`
(loaded and unpacked by us) and through `docker create` + `docker export` (docker's own
files, like /.dockerenv and /etc/hosts, ignored). Then our image, saved in docker format,
loads into docker with the same image ID and runs under dockerd's default runtime, runc.
Skipped, with the reason, only when dockerd is not installed or cannot start here.

The same against `buildah bud` (Debian's buildah 1.28, private --root/--runroot on the vfs
driver, chroot isolation, base busybox pulled from our `imagetool save --format oci`), on
examples/app and on a Dockerfile with every config field (User, Entrypoint, Labels, Volumes,
StopSignal, ...) and COPY --chown/--chmod, ADD of a tar, symlinks, deletions: files compared
through `buildah push oci-archive:` (loaded and unpacked by us) and through `buildah mount`
(buildah's own view), the config field by field (buildah's io.buildah.version label aside).
Our --format docker image, as a docker archive, goes into buildah and runs there. buildah's
containers, images and storage are removed at the end, also on failure."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from imagetool.store import Store
from tests.imagetool.builder.buildhelp import busybox_store
from tests.imagetool.builder.treecompare import DOCKER_OWN, diff_trees, tar_tree, tree
from tests.imagetool.storehelp import imagetool, running_dockerd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
APP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples",
                                   "app"))
@pytest.fixture(scope="module")
def env():
    with busybox_store("itbinterop-") as e:
        yield e


@pytest.fixture(scope="module")
def dockerd():
    with running_dockerd() as d:
        yield d


def _unpack(root: str, name: str, bundle: str) -> str:
    imagetool(root, "unpack", name, bundle)
    return os.path.join(bundle, "rootfs")


def _config(store: Store, name: str) -> dict:
    desc = store.get_image(name)
    assert desc is not None, name
    manifest = store.read_json(desc)
    return store.read_json(manifest["config"])


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
    ours = tree(_unpack(root, "app:latest", os.path.join(d, "b-ours")))
    saved = os.path.join(d, "dapp.tar")
    dockerd.docker("save", "-o", saved, "dapp:latest")
    theirs_root = os.path.join(d, "theirs-store")
    imagetool(theirs_root, "load", "-i", saved)
    theirs = tree(_unpack(theirs_root, "dapp:latest", os.path.join(d, "b-theirs")))
    assert not diff_trees(ours, theirs), "\n".join(diff_trees(ours, theirs)[:40])
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
    ours_src = tree(os.path.join(d, "b-ours", "rootfs"), DOCKER_OWN)
    theirs_exp = tar_tree(exported, DOCKER_OWN)
    assert not diff_trees(ours_src, theirs_exp), "\n".join(diff_trees(ours_src, theirs_exp)[:40])

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



# -- buildah bud -------------------------------------------------------------------------------
BUILDAH = shutil.which("buildah")
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels",
               "Volumes", "StopSignal")
# buildah labels every image it builds with its version; not the Dockerfile's doing
BUILDAH_OWN_LABELS = {"io.buildah.version"}
# Mount points buildah 1.28 makes for a RUN (its /etc/hosts, /etc/hostname, /etc/resolv.conf
# bind mounts and /run) stay in its image as empty files and an empty directory when the
# base has none; docker and BuildKit remove theirs, and so do we.
BUILDAH_STUBS = {"etc/hostname": stat.S_IFREG, "etc/hosts": stat.S_IFREG,
                 "etc/resolv.conf": stat.S_IFREG, "run": stat.S_IFDIR}
EMPTY = hashlib.sha256(b"").hexdigest()


def _without_buildah_stubs(ours: dict[str, tuple], theirs: dict[str, tuple]) -> dict[str, tuple]:
    """`theirs` less the stubs buildah left where ours has nothing, after checking that each
    is just that: an empty file or an empty directory, root's."""
    out = dict(theirs)
    for rel, kind in BUILDAH_STUBS.items():
        if rel in theirs and rel not in ours:
            ftype, _, uid, gid, what = theirs[rel]
            assert (ftype, uid, gid) == (kind, 0, 0), (rel, theirs[rel])
            assert what == (EMPTY if kind == stat.S_IFREG else None), (rel, theirs[rel])
            assert not any(k.startswith(rel + "/") for k in theirs), rel
            del out[rel]
    return out
RICH = {
    "Dockerfile": """FROM busybox:latest
ARG VERSION=1.0
ENV APP_HOME=/opt/app PATH=/opt/app/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.example.version=$VERSION team="build team"
WORKDIR $APP_HOME
COPY --chown=1000:1000 conf/ ./conf/
COPY --chmod=0755 run.sh bin/run.sh
COPY data.txt /srv/
ADD bundle.tar /opt/unpacked/
RUN mkdir -p /var/lib/app /usr/local/bin && chown 1000:1000 /var/lib/app \
 && ln -s /opt/app/bin/run.sh /usr/local/bin/run && chmod 0640 /srv/data.txt \
 && rm /etc/group && rm -rf /home/user && echo "$VERSION" > version.txt
USER 1000:1000
VOLUME /var/lib/app
EXPOSE 8080 53/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/app/bin/run.sh"]
CMD ["--serve"]
""",
    "conf/app.conf": "key=value\n",
    "conf/sub/more.conf": "more\n",
    "run.sh": "#!/bin/sh\necho run \"$@\"\n",
    "data.txt": "some data\n",
}


def _rich_context(directory: str) -> str:
    ctx = os.path.join(directory, "rich")
    for name, data in RICH.items():
        path = os.path.join(ctx, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(data)
    with tarfile.open(os.path.join(ctx, "bundle.tar"), "w") as tf:
        for name, data, mode in (("pkg/readme", b"inside the tar\n", 0o644),
                                 ("pkg/bin/tool", b"#!/bin/sh\n", 0o755)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, 123, 456, 1600000000
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("pkg/link")
        link.type, link.linkname = tarfile.SYMTYPE, "readme"
        tf.addfile(link)
    return ctx


class Buildah:
    """buildah with its own storage under `directory` (vfs: no overlay mounts of its own)."""

    def __init__(self, directory: str) -> None:
        assert BUILDAH is not None
        self.dir = directory
        self.argv = [BUILDAH, "--root", os.path.join(directory, "root"), "--runroot",
                     os.path.join(directory, "run"), "--storage-driver", "vfs"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 300
                 ) -> subprocess.CompletedProcess:
        p = subprocess.run([*self.argv, *args], capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} failed ({p.returncode}): "
                                 f"{p.stdout.decode()[-2000:]}{p.stderr.decode()[-2000:]}")
        return p

    def cleanup(self) -> list[str]:
        """Remove every container and image, unmount what is left under the storage, and
        delete it; returns the containers that were still there."""
        left = self("containers", "-q", check=False).stdout.decode().split()
        self("rm", "--all", check=False)
        self("rmi", "--all", "--force", check=False)
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if self.dir in line]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def buildah(env):
    if not BUILDAH:
        pytest.skip("buildah is not installed")
    bh = Buildah(os.path.join(env["dir"], "buildah"))
    try:
        base = os.path.join(env["dir"], "busybox-oci.tar")
        imagetool(env["root"], "save", "--format", "oci", "-o", base, "busybox:latest")
        bh("pull", "-q", f"oci-archive:{base}")
        yield bh
    finally:
        left = bh.cleanup()
    assert not left, f"buildah containers left behind: {left}"


def _buildah_tree(bh: Buildah, image: str) -> dict[str, tuple]:
    """The files of `image` as buildah itself sees them (a working container's rootfs)."""
    cid = bh("from", "--pull=never", image).stdout.decode().strip().splitlines()[-1]
    try:
        path = bh("mount", cid).stdout.decode().strip()
        return tree(path)
    finally:
        bh("umount", cid, check=False)
        bh("rm", cid, check=False)


@pytest.mark.parametrize("which", ["app", "rich"])
def test_buildah_bud_and_ours_agree(env, buildah, which):
    d, root = env["dir"], env["root"]
    ctx = APP if which == "app" else _rich_context(d)
    name = f"bh{which}:latest"
    imagetool(root, "build", "-q", "-t", name, ctx)
    p = buildah("bud", "--pull=never", "--network", "host", "--isolation", "chroot", "-t",
                name, ctx, check=False)
    assert p.returncode == 0, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]
    out = os.path.join(d, f"buildah-{which}.tar")
    buildah("push", "-q", name, f"oci-archive:{out}:{name}")
    theirs_root = os.path.join(d, f"bh-store-{which}")
    imagetool(theirs_root, "load", "-i", out)

    # the config
    ours_conf = _config(Store(root), f"docker.io/library/{name}")["config"]
    theirs_conf = dict(_config(Store(theirs_root), f"docker.io/library/{name}")["config"])
    theirs_conf["Labels"] = {k: v for k, v in (theirs_conf.get("Labels") or {}).items()
                             if k not in BUILDAH_OWN_LABELS} or None
    diffs = [f"{k}: ours {ours_conf.get(k)!r} buildah's {theirs_conf.get(k)!r}"
             for k in CONFIG_KEYS if ours_conf.get(k) != theirs_conf.get(k)]
    assert not diffs, "\n".join(diffs)

    # the files: buildah push -> our load -> our unpack, and buildah's own mount
    ours = tree(_unpack(root, name, os.path.join(d, f"bo-{which}")))
    theirs = tree(_unpack(theirs_root, name, os.path.join(d, f"bt-{which}")))
    theirs = _without_buildah_stubs(ours, theirs)
    found = diff_trees(ours, theirs, "buildah's")
    assert not found, "\n".join(found[:40])
    own = _without_buildah_stubs(ours, _buildah_tree(buildah, name))
    found = diff_trees(ours, own, "buildah's")
    assert not found, "\n".join(found[:40])
    if which == "rich":
        assert ours["usr/local/bin/run"][4] == "/opt/app/bin/run.sh"
        assert ours["opt/app/conf/sub/more.conf"][2:4] == (1000, 1000)
        assert "etc/group" not in ours and "home/user" not in ours


def test_our_docker_format_image_runs_in_buildah(env, buildah):
    d, root = env["dir"], env["root"]
    dest = os.path.join(d, "ours-docker.tar")
    imagetool(root, "build", "-q", "--format", "docker", "--output",
              f"type=docker,dest={dest},name=oursd:latest", APP)
    buildah("pull", "-q", f"docker-archive:{dest}")
    info = json.loads(buildah("inspect", "--type", "image", "oursd:latest").stdout)
    assert json.loads(info["Manifest"])["mediaType"] == (
        "application/vnd.docker.distribution.manifest.v2+json")
    cid = buildah("from", "--pull=never", "oursd:latest").stdout.decode().strip().splitlines()[-1]
    try:
        p = buildah("run", "--isolation", "chroot", "--network", "host", cid, "--", "cat",
                    "/srv/www/health.txt")
        assert p.stdout == b"ok\n"
    finally:
        buildah("rm", cid, check=False)


def test_our_docker_format_image_pulls_into_docker(env, dockerd, registry):
    """--format docker through a registry: docker pulls the very manifest we made (its
    RepoDigest is our digest) and runs it."""
    root = env["root"]
    digest = imagetool(root, "build", "-q", "--format", "docker", "-t", "appd:latest",
                       APP).stdout.decode().strip()
    store = Store(root)
    manifest = store.read_json(store.get_image("docker.io/library/appd:latest"))
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    reg = registry("plain")
    remote = reg.ref("appd:latest")
    imagetool(root, "push", "-q", "appd:latest", remote)
    dockerd.docker("pull", "-q", remote, timeout=120)
    [info] = json.loads(dockerd.docker("image", "inspect", remote).stdout)
    assert info["Id"] == manifest["config"]["digest"] == digest  # build prints the image ID
    mdigest = store.get_image("docker.io/library/appd:latest")["digest"]
    assert f"{remote.rsplit(':', 1)[0]}@{mdigest}" in info["RepoDigests"]

    p = dockerd.docker("run", "--rm", "--network", "none", remote, "cat",
                       "/srv/www/health.txt", check=False, timeout=120)
    assert p.returncode == 0, p.stderr.decode() + dockerd.log_tail()
    assert p.stdout.decode() == "ok\n"
    dockerd.docker("rmi", remote)
