"""`imagetool build --output type=oci|docker,dest=FILE[,name=REF]` (docker buildx's syntax):
examples/app on a busybox base made with `imagetool import`, written as an archive through
imagetool.archive's writers. The OCI archive is what skopeo reads (`oci-archive:`) and umoci
lists; the docker archive and a named OCI archive load with our own `imagetool load` into a
fresh store and give the same image digest; with only --output nothing is tagged in the store;
other types and bad --output values are one-line errors before any step runs. Temp dirs and
mounts are removed even on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

from imagetool.store import REF_NAME, Store
from tests.imagetool.builder.buildhelp import busybox_store
from tests.imagetool.storehelp import imagetool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
APP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "app")
SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")


@pytest.fixture(scope="module")
def env():
    with busybox_store("itbout-") as e:
        yield e


def _names(root: str) -> list[str]:
    return [(d.get("annotations") or {}).get(REF_NAME, "") for d in Store(root).list_images()]


def _member(path: str, name: str) -> bytes:
    with tarfile.open(path) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_oci_output_without_tag_is_an_archive_skopeo_reads(env):
    dest = os.path.join(env["dir"], "app-oci.tar")
    p = imagetool(env["root"], "build", "-q", "--output", f"type=oci,dest={dest}", APP)
    digest = p.stdout.decode().strip()
    assert digest.startswith("sha256:")
    assert not [n for n in _names(env["root"]) if "app" in n], "only --output: no tag"
    index = json.loads(_member(dest, "index.json"))
    [mdigest] = [m["digest"] for m in index["manifests"]]
    # build prints the image ID: the config digest of the archived manifest
    assert json.loads(_member(dest, f"blobs/sha256/{mdigest[7:]}"))["config"]["digest"] == digest
    assert "annotations" not in index["manifests"][0]  # no name asked for, none written
    assert not [n for n in os.listdir(env["dir"]) if n.startswith(".app-oci.tar.")]
    s = subprocess.run([SKOPEO, "inspect", f"oci-archive:{dest}"], capture_output=True,
                       timeout=60)
    assert s.returncode == 0, s.stderr.decode()
    info = json.loads(s.stdout)
    assert info["Digest"] == mdigest
    assert "GREETING=hello from imagetool build" in info["Env"]
    s = subprocess.run([SKOPEO, "inspect", "--config", f"oci-archive:{dest}"],
                       capture_output=True, timeout=60)
    assert s.returncode == 0, s.stderr.decode()
    conf = json.loads(s.stdout)["config"]
    assert conf["WorkingDir"] == "/srv/www" and "80/tcp" in conf["ExposedPorts"]


def test_docker_output_with_tag_loads_in_a_fresh_store_as_the_same_image(env):
    dest = os.path.join(env["dir"], "app-docker.tar")
    p = imagetool(env["root"], "build", "-q", "-t", "app:out", "--output",
                  f"type=docker,dest={dest}", APP)
    digest = p.stdout.decode().strip()
    assert "docker.io/library/app:out" in _names(env["root"])  # -t too: both
    store = Store(env["root"])
    built = store.read_json(store.get_image("docker.io/library/app:out"))
    entries = json.loads(_member(dest, "manifest.json"))
    assert entries[0]["RepoTags"] == ["app:out"]
    fresh = os.path.join(env["dir"], "fresh-docker")
    try:
        p = imagetool(fresh, "load", "-i", dest)
        assert "Loaded image: app:out" in p.stdout.decode()
        loaded_store = Store(fresh)
        ldesc = loaded_store.get_image("docker.io/library/app:out")
        assert ldesc is not None
        loaded = loaded_store.read_json(ldesc)
        # the same image ID (config digest), layers and so manifest digest
        assert loaded["config"]["digest"] == built["config"]["digest"]
        assert [x["digest"] for x in loaded["layers"]] == [x["digest"] for x in built["layers"]]
        assert ldesc["digest"] == store.get_image("docker.io/library/app:out")["digest"]
        assert loaded["config"]["digest"] == digest  # build printed the image ID
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def test_named_oci_output_loads_with_the_same_manifest_digest(env):
    dest = os.path.join(env["dir"], "app-named.tar")
    p = imagetool(env["root"], "build", "-q", "--output",
                  f"type=oci,dest={dest},name=example.com/app:2", APP)
    digest = p.stdout.decode().strip()
    assert "example.com/app:2" not in _names(env["root"])
    fresh = os.path.join(env["dir"], "fresh-oci")
    try:
        imagetool(fresh, "load", "-i", dest)
        desc = Store(fresh).get_image("example.com/app:2")
        assert desc is not None
        assert Store(fresh).read_json(desc)["config"]["digest"] == digest  # the image ID

        if UMOCI:  # umoci reads the layout too, and finds the tag
            layout = os.path.join(env["dir"], "layout")
            os.mkdir(layout)
            # tar(1): tarfile's extraction filters need Python 3.11.4, Debian has 3.11.2
            subprocess.run(["tar", "-xf", dest, "-C", layout], check=True, timeout=60)
            u = subprocess.run([UMOCI, "ls", "--layout", layout], capture_output=True,
                               timeout=60)
            assert u.returncode == 0 and u.stdout.decode().split() == ["2"], u.stderr.decode()
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def test_unnamed_docker_output_has_no_repotags(env):
    dest = os.path.join(env["dir"], "app-untagged.tar")
    imagetool(env["root"], "build", "-q", "--output", f"type=docker,dest={dest}", APP)
    entries = json.loads(_member(dest, "manifest.json"))
    assert len(entries) == 1 and entries[0]["RepoTags"] is None
    p = imagetool(os.path.join(env["dir"], "fresh-untagged"), "load", "-i", dest, check=False)
    assert p.returncode == 1 and "no RepoTags" in p.stderr.decode()


@pytest.mark.parametrize("spec,words", [
    ("type=local,dest=out", ["type=local", "not supported", "oci", "docker"]),
    ("type=registry", ["type=registry", "not supported"]),
    ("type=image,name=x", ["type=image", "not supported"]),
    ("type=oci", ["dest="]),
    ("type=docker,dest=-", ["stdout"]),
    ("dest=x.tar", ["no type"]),
    ("type=oci,dest=x.tar,compression=zstd", ["unknown key", "compression"]),
    ("type=oci,dest=/nonexistent-dir/x.tar", ["does not exist"]),
    ("type=oci,dest=x.tar,name=UPPER:1", ["name=UPPER:1"]),
    ("oci", ["KEY=VALUE"]),
])
def test_bad_output_is_a_clear_error_before_anything_runs(env, spec, words):
    p = imagetool(env["root"], "build", "--output", spec, APP, check=False, cwd=env["dir"])
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert len(err.strip().splitlines()) == 1
    for w in words:
        assert w in err, err
    assert b"STEP" not in p.stdout


def test_build_without_tag_or_output_keeps_a_none_image(env):
    """As docker: the image is built and kept (unnamed, unless a name has it already: the
    build is reproducible, so an earlier -t of the same context may); its ID is printed."""
    p = imagetool(env["root"], "build", APP)
    iid = p.stdout.decode().strip().splitlines()[-1]
    assert iid.startswith("sha256:")
    assert iid[7:19] in imagetool(env["root"], "images", "-q").stdout.decode().split()

