"""`imagetool build --platform/--format/--compression`: only the host's platform builds (the
platform args a RUN sees say so); --format docker names the same layer blobs with Docker's
media types and the image goes through a real docker-registry to skopeo and back into a
store; --compression zstd writes +zstd layers that the next build, unpack and skopeo read,
with cache records of their own. A busybox base from `imagetool import`, a private store."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from imagetool import bundle
from imagetool import mediatypes as mt
from imagetool.builder.executor import Builder, BuildError, BuildOptions
from imagetool.builder.plan import Platform
from imagetool.pull import pull
from imagetool.push import push
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import busybox_store, write_context
from tests.imagetool.storehelp import imagetool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
HOST = Platform.host()
OTHER = "linux/arm64" if HOST.arch != "arm64" else "linux/amd64"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(scope="module")
def env():
    with busybox_store("itbfmt-") as e:
        yield e


def _ctx(env, dockerfile: str, files: dict[str, str] | None = None) -> str:
    return write_context(env["dir"], dockerfile, files)  # type: ignore[arg-type]


def _build(env, dockerfile: str, tag: str, files: dict[str, str] | None = None,
           **kw) -> Builder:
    b = Builder(Store(env["root"]), BuildOptions(context=_ctx(env, dockerfile, files),
                                                 tags=[tag], **kw), out=lambda s: None)
    b.result = b.build()  # type: ignore[attr-defined]
    return b


def _parts(env, tag: str) -> dict:
    return bundle.image_parts(Store(env["root"]), f"docker.io/library/{tag}")


def _read(env, store: Store, name: str, path: str) -> str:
    d = tempfile.mkdtemp(prefix="unp-", dir=env["dir"])
    bundle.unpack(store, name, os.path.join(d, "b"), cmd=["true"])
    with open(os.path.join(d, "b", "rootfs", path.lstrip("/"))) as f:
        return f.read()


# -- --platform --------------------------------------------------------------------------------
def test_platform_args_in_run_are_the_hosts(env):
    df = ("FROM --platform=$BUILDPLATFORM busybox\n"
          "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH\n"
          "RUN echo \"$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM|"
          "$BUILDARCH\" > /plat\n")
    b = _build(env, df, "plat:1", platform=str(HOST))
    want = f"{HOST}|{HOST.os}|{HOST.arch}|{HOST.variant}|{HOST}|{HOST.arch}\n"
    assert _read(env, Store(env["root"]), "docker.io/library/plat:1", "/plat") == want
    conf = _parts(env, "plat:1")["config"]
    assert (conf["os"], conf["architecture"]) == (HOST.os, HOST.arch)
    assert b.result.manifest["platform"]["architecture"] == HOST.arch
    # the same with no --platform (the default is the host's): all from the cache
    b = _build(env, df, "plat:2")
    assert b.containers == 0


def test_other_platforms_fail_before_anything_runs(env):
    b = Builder(Store(env["root"]), BuildOptions(context=_ctx(env, "FROM busybox\nRUN true\n"),
                                                 tags=["p:1"], platform=OTHER),
                out=lambda s: None)
    with pytest.raises(BuildError) as ei:
        b.build()
    assert str(ei.value) == (f"--platform {OTHER}: only the host's platform {HOST} can be "
                             "built here (no emulation)")
    assert b.steps == 0 and b.containers == 0
    df = f"FROM busybox AS ok\nRUN true\nFROM --platform={OTHER} busybox\nRUN true\n"
    b = Builder(Store(env["root"]), BuildOptions(context=_ctx(env, df), tags=["p:1"]),
                out=lambda s: None)
    with pytest.raises(BuildError) as ei:
        b.build()
    assert str(ei.value).startswith(f"Dockerfile:3: FROM --platform={OTHER}: only the host's")
    assert b.steps == 0
    # a stage that is not built may name any platform
    _build(env, df, "p:ok", target="ok")
    # an ARG in the FROM line is expanded first
    df = f"ARG P={OTHER}\nFROM --platform=$P busybox\n"
    with pytest.raises(BuildError, match=f"Dockerfile:2: FROM --platform={OTHER}:"):
        _build(env, df, "p:2")


# -- --format docker ---------------------------------------------------------------------------
DF = ("FROM busybox\nWORKDIR /app\nCOPY f.txt ./\nRUN echo built >> f.txt\n"
      'CMD ["cat", "/app/f.txt"]\n')


def test_docker_format_same_blobs_docker_types_through_a_registry(env, registry):
    store = Store(env["root"])
    oci = _build(env, DF, "fmt:oci", {"f.txt": "x\n"}, build_args=EPOCH)
    dk = _build(env, DF, "fmt:docker", {"f.txt": "x\n"}, build_args=EPOCH, format="docker")
    assert dk.containers == 0            # the format is no cache input: same layers
    om = store.read_json(oci.result.manifest)
    dm = store.read_json(dk.result.manifest)
    assert om["mediaType"] == mt.OCI_MANIFEST and om["config"]["mediaType"] == mt.OCI_CONFIG
    assert {x["mediaType"] for x in om["layers"]} == {mt.OCI_LAYER_GZIP}
    assert dk.result.manifest["mediaType"] == dm["mediaType"] == mt.DOCKER_MANIFEST
    assert dm["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert {x["mediaType"] for x in dm["layers"]} == {mt.DOCKER_LAYER_GZIP}
    assert [x["digest"] for x in dm["layers"]] == [x["digest"] for x in om["layers"]]
    assert dm["config"]["digest"] == om["config"]["digest"]
    assert _read(env, store, "docker.io/library/fmt:docker", "/app/f.txt") == "x\nbuilt\n"
    # an OCI build on a base in Docker's types names the inherited layers the OCI way
    child = _build(env, "FROM fmt:docker\nRUN echo c > /c\n", "fmt:child")
    cm = store.read_json(child.result.manifest)
    assert cm["mediaType"] == mt.OCI_MANIFEST
    assert {x["mediaType"] for x in cm["layers"]} == {mt.OCI_LAYER_GZIP}

    # pushed to a docker-registry, read by skopeo, pulled back into another store
    reg = registry("plain")
    push(store, "docker.io/library/fmt:docker", reg.ref("fmt:docker"), config=reg.config(),
         progress=False)
    tls = [a.replace("dest-", "") for a in reg.skopeo_args()]
    p = subprocess.run(["skopeo", "inspect", "--raw", *tls, f"docker://{reg.ref('fmt:docker')}"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == dm
    p = subprocess.run(["skopeo", "inspect", "--config", *tls,
                        f"docker://{reg.ref('fmt:docker')}"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["config"]["Cmd"] == ["cat", "/app/f.txt"]
    back = Store(os.path.join(env["dir"], "back"))
    digest = pull(back, reg.ref("fmt:docker"), config=reg.config(), progress=False)
    assert digest == dk.result.manifest["digest"]
    assert _read(env, back, reg.ref("fmt:docker"), "/app/f.txt") == "x\nbuilt\n"


def test_docker_format_archive_reads_in_skopeo(env):
    dest = os.path.join(env["dir"], "fmt-docker.tar")
    imagetool(env["root"], "build", "-q", "--format", "docker", "--output",
              f"type=docker,dest={dest},name=fmtarch:1", _ctx(env, DF, {"f.txt": "y\n"}))
    p = subprocess.run(["skopeo", "inspect", "--raw", f"docker-archive:{dest}"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["mediaType"] == mt.DOCKER_MANIFEST


def test_docker_format_refuses_zstd(env):
    p = imagetool(env["root"], "build", "-t", "z:1", "--format", "docker", "--compression",
                  "zstd", _ctx(env, DF, {"f.txt": "x\n"}), check=False)
    assert p.returncode == 2
    assert p.stderr.decode().strip() == ("imagetool: build: --compression zstd needs --format "
                                         "oci: Docker's media types have no zstd layer")


DFZ = DF.replace("/app", "/zapp")   # steps no other test caches


# -- --compression zstd ------------------------------------------------------------------------
def test_zstd_layers_build_on_unpack_and_cache_apart(env):
    store = Store(env["root"])
    z = _build(env, DFZ, "zs:1", {"f.txt": "z\n"}, compression="zstd",
               build_args=EPOCH)
    layers = [d for d, _ in _parts(env, "zs:1")["chain"]]
    assert layers[0]["mediaType"] == mt.OCI_LAYER_GZIP          # the base's, as it is
    assert {d["mediaType"] for d in layers[1:]} == {mt.OCI_LAYER_ZSTD}
    for d in layers[1:]:
        assert store.read_blob(d["digest"])[:4] == b"\x28\xb5\x2f\xfd"
    assert _read(env, store, "docker.io/library/zs:1", "/zapp/f.txt") == "z\nbuilt\n"
    # a gzip build of the same steps does not take the zstd layers from the cache ...
    g = _build(env, DFZ, "zs:gz", {"f.txt": "z\n"}, build_args=EPOCH)
    assert g.containers == 1 and g.cached == 0
    assert {d["mediaType"] for d, _ in _parts(env, "zs:gz")["chain"]} == {mt.OCI_LAYER_GZIP}
    # ... and the diff_ids (the uncompressed tars) are the same (SOURCE_DATE_EPOCH: the
    # RUN's mtimes would otherwise differ when the builds fall in different seconds)
    assert _parts(env, "zs:gz")["config"]["rootfs"] == _parts(env, "zs:1")["config"]["rootfs"]
    # a zstd rebuild is all cache
    again = _build(env, DFZ, "zs:2", {"f.txt": "z\n"}, compression="zstd",
                   build_args=EPOCH)
    assert again.containers == 0 and again.cached == 3
    assert again.result.manifest["digest"] == z.result.manifest["digest"]
    # a build on the zstd image runs over its (decompressed) snapshots
    child = _build(env, "FROM zs:1\nRUN cat /zapp/f.txt > /copy\n", "zs:child")
    assert child.containers == 1
    assert _read(env, store, "docker.io/library/zs:child", "/copy") == "z\nbuilt\n"
    # skopeo reads the zstd image from the store
    out = os.path.join(env["dir"], "zs-copy")
    p = subprocess.run(["skopeo", "copy", "--quiet", "oci:" + env["root"] +
                        ":docker.io/library/zs:1", f"oci:{out}:zs"], capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    # --format docker over a zstd base: an error naming the FROM line, before anything runs
    with pytest.raises(BuildError, match="Dockerfile:1: FROM docker.io/library/zs:1: "
                       "--format docker: layer sha256:.* is .*zstd"):
        _build(env, "FROM zs:1\nRUN true\n", "zs:docker", format="docker")


def test_zstd_same_input_same_digest(env):
    a = _build(env, DF, "zr:1", {"f.txt": "r\n"}, compression="zstd", build_args=EPOCH,
               no_cache=True)
    b = _build(env, DF, "zr:2", {"f.txt": "r\n"}, compression="zstd", build_args=EPOCH,
               no_cache=True)
    assert a.containers == b.containers == 1
    assert a.result.manifest["digest"] == b.result.manifest["digest"]
