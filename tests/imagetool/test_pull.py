"""Pull end to end against a real docker-registry: images pushed by skopeo (OCI and Docker
schema2) land in the store byte for byte; gzip, zstd and uncompressed layers are checked
against the config's diff_ids when asked (--verify-diff-ids); foreign layers come from
their URLs; docker.io mirrors; and faults: the registry killed mid-blob and restarted,
dropped connections (a 127.0.0.1 proxy cuts them), a corrupted blob, an unknown tag, two
pulls at once. After every failure the store has no name and no partial file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

import pytest

from imagetool import cli
from imagetool import mediatypes as mt
from imagetool.pull import pull
from imagetool.registry.config import RegistryConfig
from imagetool.registry.errors import DigestMismatch, NotFoundError
from imagetool.registry.progress import PlainReporter, RichReporter
from imagetool.store import Store
from imagetool.store.ingest import RESUME_PREFIX
from tests.imagetool.conftest import Recorder, assert_clean, free_port
from tests.imagetool.faultproxy import DropAfter, FaultProxy
from tests.imagetool.images import Layout, compress, sha256, skopeo_copy, tar_bytes

BIG = 24 << 20


def _raw(reg, repo_tag: str) -> bytes:
    p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{reg.ref(repo_tag)}"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="session")
def big_image(tmp_path_factory) -> dict:
    """`big`: one small gzip layer and a 24 MiB uncompressed one of random bytes."""
    lay = Layout(str(tmp_path_factory.mktemp("big") / "layout"))
    small = tar_bytes({"etc/hello": b"hi\n"})
    big = tar_bytes({"data.bin": os.urandom(BIG)})
    desc = lay.tag(lay.image([(small, "gzip"), (big, "none")]), "big")
    manifest = lay.read(desc["digest"])
    import json
    layer = json.loads(manifest)["layers"][1]
    return {"path": lay.path, "desc": desc, "layer": layer}


def _seed_big(reg, big_image) -> str:
    skopeo_copy(f"oci:{big_image['path']}:big", f"docker://{reg.ref('big:1')}",
                "--preserve-digests", *reg.skopeo_args())
    return reg.ref("big:1")


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_skopeo_pushed_image_lands_byte_for_byte(registry, busybox_oci, store, fmt, capsys):
    reg = registry("plain")
    args = ["--format", "v2s2"] if fmt == "v2s2" else []
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('busybox:latest')}", *args,
                *reg.skopeo_args())
    served = _raw(reg, "busybox:latest")
    ref = reg.ref("busybox:latest")
    digest = pull(store, ref, config=reg.config())  # progress=None: plain lines off a tty
    assert digest == sha256(served)
    assert store.read_blob(digest) == served
    desc = store.get_image(ref)
    assert desc["digest"] == digest and desc["size"] == len(served)
    assert desc["mediaType"] == (mt.DOCKER_MANIFEST if fmt == "v2s2" else mt.OCI_MANIFEST)
    manifest = store.read_json(digest)
    for blob in [manifest["config"], *manifest["layers"]]:
        assert len(store.read_blob(blob["digest"], blob["size"])) == blob["size"]
    err = capsys.readouterr().err
    layer = manifest["layers"][0]["digest"]
    assert f"{layer[7:19]}: downloading layer (1.1 MB)" in err
    assert f"{layer[7:19]}: done" in err
    assert f"{ref}: pulled {digest}" in err
    # By digest: the same content, named by the digest reference.
    by_digest = f"{reg.host}/busybox@{digest}"
    assert pull(store, by_digest, config=reg.config(), progress=False) == digest
    assert store.get_image(by_digest)["digest"] == digest
    assert_clean(store)
    if fmt == "oci":
        p = subprocess.run(["oci-image-tool", "validate", "--type", "image",
                            "--ref", f"name={ref}", store.root], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_gzip_zstd_and_uncompressed_layers(registry, store, tmp_path, capsys):
    reg = registry("plain")
    lay = Layout(str(tmp_path / "layout"))
    layers = [(tar_bytes({"a": b"gzip " * 1000}), "gzip"),
              (tar_bytes({"b": b"zstd " * 1000}), "zstd"),
              (tar_bytes({"c": b"none " * 1000}), "none")]
    lay.tag(lay.image(layers), "good")
    lay.tag(lay.image(layers, diff_ids=[sha256(b"x")] * 3), "bad")
    for tag in ("good", "bad"):
        skopeo_copy(f"oci:{lay.path}:{tag}", f"docker://{reg.ref('mixed:' + tag)}",
                    "--preserve-digests", *reg.skopeo_args())
    digest = pull(store, reg.ref("mixed:good"), config=reg.config(), progress=False)
    kinds = [d["mediaType"] for d in store.read_json(digest)["layers"]]
    assert kinds == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.OCI_LAYER]
    # Asked for, diff_ids are checked as layers arrive: use a store that doesn't have them.
    fresh = Store(str(tmp_path / "fresh"))
    with pytest.raises(DigestMismatch) as e:
        pull(fresh, reg.ref("mixed:bad"), config=reg.config(), progress=False,
             verify_diff_ids=True)
    assert "uncompresses to sha256:" in str(e.value) and "mixed:bad" in str(e.value)
    assert fresh.list_images() == []
    # The CLI flag does the same.
    other = Store(str(tmp_path / "other"))
    assert cli.main(["--root", other.root, "pull", "-q", "--verify-diff-ids",
                     reg.ref("mixed:bad")]) == 1
    assert "uncompresses to sha256:" in capsys.readouterr().err
    assert other.list_images() == []
    # By default only the compressed digests are checked (diff_ids are checked at unpack).
    assert pull(fresh, reg.ref("mixed:bad"), config=reg.config(), progress=False)
    assert_clean(store)
    assert_clean(fresh)


def test_foreign_layer_comes_from_its_urls(registry, store, tmp_path):
    """A non-distributable layer is fetched from its `urls` (never uploaded to the registry);
    when the URL fails too, the error names both places tried."""
    lay = Layout(str(tmp_path / "layout"))
    foreign = tar_bytes({"windows/system32": b"not really\n"})
    blob = compress(foreign, "gzip")
    served: dict[str, bytes] = {f"/blobs/{sha256(blob)}": blob}
    web = FaultProxy(None, files=served.get).start()
    try:
        url = f"http://{web.host}/blobs/{sha256(blob)}"
        lay.tag(lay.image([(tar_bytes({"base": b"1"}), "gzip"), (foreign, "gzip")],
                          foreign={1: [url]}), "foreign")
        reg = registry("plain", validation={"manifests": {"urls": {
            "allow": [r"^http://127\.0\.0\.1"]}}})
        from imagetool.push import push
        results = Recorder()
        push(Store(lay.path), "foreign", reg.ref("win:1"), config=reg.config(),
             reporter=results)
        assert sha256(blob) not in [k for k, _ in results.kinds("start")]  # never uploaded
        digest = pull(store, reg.ref("win:1"), config=reg.config(), progress=False)
        assert store.has_blob(sha256(blob))
        assert len(web.requests("GET", "/blobs/")) == 1
        assert_clean(store)
        served.clear()  # the URL now answers 404; the registry doesn't have it either
        other = Store(str(tmp_path / "other"))
        with pytest.raises(NotFoundError) as e:
            pull(other, reg.ref("win:1"), config=reg.config(), progress=False)
        assert f"also tried {url}" in str(e.value)
        assert other.list_images() == [] and digest
    finally:
        web.stop()


def test_docker_io_mirrors(registry, busybox_oci, store):
    """docker.io references go to the configured mirrors in order; a dead one is skipped."""
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('library/busybox:latest')}",
                *reg.skopeo_args())
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = RegistryConfig(certs_d=[], mirrors={"docker.io": [dead, f"http://{reg.host}"]})
    rec = Recorder()
    digest = pull(store, "busybox", config=cfg, reporter=rec)
    assert [v for _, v in rec.kinds("message")][0].startswith(f"mirror {dead} failed")
    assert store.get_image("docker.io/library/busybox:latest")["digest"] == digest
    assert digest == sha256(_raw(reg, "library/busybox:latest"))
    assert_clean(store)


def test_unknown_tag_and_repository(registry, busybox_oci, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('busybox:latest')}",
                *reg.skopeo_args())
    with pytest.raises(NotFoundError) as e:
        pull(store, reg.ref("busybox:nope"), config=reg.config(), progress=False)
    assert str(e.value) == (f"{reg.host}/busybox:nope: not found on {reg.host} "
                            "(MANIFEST_UNKNOWN: manifest unknown)")
    with pytest.raises(NotFoundError) as e:
        pull(store, reg.ref("nothing/here:1"), config=reg.config(), progress=False)
    assert str(e.value).startswith(f"{reg.host}/nothing/here:1: not found on {reg.host}")
    assert store.list_images() == [] and store.ingest_files() == []


def test_corrupted_blob_is_refused(registry, busybox_oci, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('busybox:latest')}",
                *reg.skopeo_args())
    import json
    layer = json.loads(_raw(reg, "busybox:latest"))["layers"][0]["digest"]
    path = reg.blob_data_path(layer)
    with open(path, "r+b") as f:  # same size, one byte flipped in the middle
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DigestMismatch) as e:
        pull(store, reg.ref("busybox:latest"), config=reg.config(), progress=False)
    assert f"{reg.host}/busybox:latest: blob {layer}" in str(e.value)
    assert "content hashes to sha256:" in str(e.value)
    assert store.list_images() == []
    assert not store.has_blob(layer)
    assert_clean(store)


class KillMidBlob(Recorder):
    """SIGKILLs the registry once `threshold` bytes of `digest` have arrived, and restarts
    it (same port, same storage) a second later from another thread."""

    def __init__(self, reg, digest: str, threshold: int) -> None:
        super().__init__()
        self.reg, self.digest, self.threshold = reg, digest, threshold
        self.seen = 0
        self.restarter: threading.Thread | None = None

    def advance(self, key: str, n: int) -> None:
        super().advance(key, n)
        if key != self.digest or self.restarter:
            return
        self.seen += n
        if self.seen >= self.threshold:
            self.reg.kill()
            self.restarter = threading.Timer(1.0, self.reg.start)
            self.restarter.start()


def test_registry_killed_mid_blob_then_restarted(registry, big_image, store):
    reg = registry("plain")
    ref = _seed_big(reg, big_image)
    first_pid = reg.proc.pid
    layer = big_image["layer"]
    rec = KillMidBlob(reg, layer["digest"], 2 << 20)
    digest = pull(store, ref, config=reg.config(), reporter=rec)
    rec.restarter.join(timeout=30)
    assert reg.proc.pid != first_pid  # it really was a new registry process
    offsets = [v for k, v in rec.kinds("resumed") if k == layer["digest"]]
    assert offsets and 0 < offsets[0] < layer["size"], offsets  # resumed, not restarted
    assert digest == big_image["desc"]["digest"]
    assert len(store.read_blob(layer["digest"], layer["size"])) == layer["size"]
    assert_clean(store)


def test_dropped_connection_resumes_with_range(registry, big_image, store):
    reg = registry("plain")
    _seed_big(reg, big_image)
    layer = big_image["layer"]
    cut = 5 << 20
    proxy = FaultProxy(("127.0.0.1", reg.port), lambda m, p, h, n: DropAfter(cut)
                       if m == "GET" and p.endswith(layer["digest"]) and n < 2 else None).start()
    try:
        rec = Recorder()
        pull(store, f"{proxy.host}/big:1", config=reg.config(), reporter=rec)
    finally:
        proxy.stop()
    gets = proxy.requests("GET", layer["digest"])
    assert [e.headers.get("Range") for e in gets] == [None, f"bytes={cut}-",
                                                      f"bytes={2 * cut}-"]
    assert [v for k, v in rec.kinds("resumed")] == [cut, 2 * cut]
    assert store.has_blob(layer["digest"])
    assert_clean(store)


def test_killed_pull_resumes_from_its_ingest_file(registry, big_image, store):
    """A pull process dies mid-layer (SIGKILL); the next pull continues from the bytes the
    store kept in its keyed ingest file, asking the registry for the rest with Range."""
    reg = registry("plain")
    _seed_big(reg, big_image)
    layer = big_image["layer"]
    cut = 6 << 20
    proxy = FaultProxy(("127.0.0.1", reg.port), lambda m, p, h, n: DropAfter(cut, hold=60)
                       if m == "GET" and p.endswith(layer["digest"]) and n == 0 else None).start()
    try:
        ref = f"{proxy.host}/big:1"
        proc = subprocess.Popen([sys.executable, "-c", PULLER, store.root, ref],
                                env={**os.environ, "PYTHONPATH": os.getcwd()},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial = os.path.join(store.ingest_dir, f"{RESUME_PREFIX}sha256-{layer['digest'][7:]}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(partial) and os.path.getsize(partial) >= cut:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
        assert os.path.getsize(partial) == cut
        rec = Recorder()
        pull(store, ref, config=reg.config(), reporter=rec)
    finally:
        proxy.stop()
    assert [e.headers.get("Range") for e in proxy.requests("GET", layer["digest"])] == [
        None, f"bytes={cut}-"]
    assert (layer["digest"], cut) in rec.kinds("resumed")
    assert len(store.read_blob(layer["digest"], layer["size"])) == layer["size"]
    assert_clean(store)


PULLER = """
import sys
from imagetool.store import Store
from imagetool.store.ingest import RESUME_PREFIX
from imagetool.pull import pull
from imagetool.registry.config import RegistryConfig
print(pull(Store(sys.argv[1]), sys.argv[2], config=RegistryConfig(certs_d=[]), progress=False))
"""


def test_two_pulls_at_once(registry, big_image, store):
    """Two processes pull the same image into one store at the same time."""
    reg = registry("plain")
    ref = _seed_big(reg, big_image)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", PULLER, store.root, ref],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert {o[0].decode().strip() for o in outs} == {big_image["desc"]["digest"]}
    assert [d["annotations"]["org.opencontainers.image.ref.name"]
            for d in store.list_images()] == [ref]
    assert_clean(store)


def test_rich_progress_on_a_terminal(registry, busybox_oci, store):
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('busybox:latest')}",
                *reg.skopeo_args())
    out = io.StringIO()
    rep = RichReporter(out)
    rep.console.is_terminal  # noqa: B018 - rich decides; the bars render either way
    digest = pull(store, reg.ref("busybox:latest"), config=reg.config(), reporter=rep)
    rep.close()
    text = out.getvalue()
    manifest = store.read_json(digest)
    assert manifest["layers"][0]["digest"][7:19] in text and "Downloading" in text
    plain = io.StringIO()
    PlainReporter(plain).skipped("sha256:" + "a" * 64, "layer", "already present")
    assert plain.getvalue() == "aaaaaaaaaaaa: layer already present\n"


def test_blobs_start_largest_first(registry, store, tmp_path):
    """With one worker the order is visible: the biggest blob first, the config last."""
    reg = registry("plain")
    lay = Layout(str(tmp_path / "layout"))
    sizes = (40_000, 300_000, 5_000, 120_000)
    lay.tag(lay.image([(tar_bytes({f"f{i}": os.urandom(n)}), "none")
                       for i, n in enumerate(sizes)]), "v")
    skopeo_copy(f"oci:{lay.path}:v", f"docker://{reg.ref('order:v')}", "--preserve-digests",
                *reg.skopeo_args())
    rec = Recorder()
    digest = pull(store, reg.ref("order:v"), config=reg.config(), reporter=rec, workers=1)
    m = store.read_json(digest)
    by_size = sorted([m["config"], *m["layers"]], key=lambda d: -d["size"])
    assert [k for k, _ in rec.kinds("start")] == [d["digest"] for d in by_size]
    assert by_size[-1] == m["config"]
    assert_clean(store)
