"""An image with no Entrypoint or Cmd (what `imagetool import` makes, like `docker import`):
`imagetool unpack` gives the bundle umoci's default process, `sh`, and says so on stderr; the
bundle runs under runc and pyrunc. `imagetool run` of it without a command stays refused
(docker's "no command specified", exit 125) and leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from imagetool.run.records import Records
from tests.imagetool.storehelp import imagetool, remove_containers, rootfs_tar, unmount_under
from tests.rig import PYRUNC, RUNC, Runtime, cgroup_leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NAME = "docker.io/library/nocmd:latest"


@pytest.fixture
def store_root():
    d = tempfile.mkdtemp(prefix="itnocmd-")
    os.chmod(d, 0o711)
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "nocmd:latest")
        yield root
    finally:
        remove_containers(root)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["runc", "pyrunc"])
def runtime(request):
    binary = {"runc": RUNC, "pyrunc": PYRUNC}[request.param]
    if not binary:
        pytest.skip(f"{request.param} is not installed")
    rt = Runtime(binary, tempfile.mkdtemp(prefix=f"nocmd-{request.param}-root-"))
    yield rt
    left = rt.cleanup()
    cgroups = [p for cid in rt.ids for p in cgroup_leftovers(cid)]
    shutil.rmtree(rt.root, ignore_errors=True)
    assert not left and not cgroups, (left, cgroups)


def _config(bundle: str) -> dict:
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def test_the_image_really_has_no_command(store_root):
    conf = json.loads(imagetool(store_root, "inspect", "nocmd").stdout)
    conf = conf[0] if isinstance(conf, list) else conf
    text = json.dumps(conf)
    assert '"Cmd": [' not in text and '"Entrypoint": [' not in text, text


def test_unpack_defaults_to_sh_and_the_bundle_runs(store_root, runtime):
    bundle = os.path.join(os.path.dirname(store_root), "bundle")
    p = imagetool(store_root, "unpack", "nocmd", bundle)
    note = p.stderr.decode().splitlines()
    assert len(note) == 1 and "no command" in note[0] and note[0].endswith("runs sh"), note
    assert _config(bundle)["process"]["args"] == ["sh"]
    with open(os.path.join(bundle, "imagetool.json")) as f:
        assert json.load(f)["defaultCmd"] == ["sh"]
    # `sh` itself, stdin closed: it reads EOF and exits 0
    r = runtime("run", "--bundle", bundle, runtime.new_id("nocmd"), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode()
    cfg = _config(bundle)
    cfg["process"]["args"] = ["sh", "-c", "echo ok; exit 4"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    r = runtime("run", "--bundle", bundle, runtime.new_id("nocmd"), stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (4, b"ok\n"), r.stderr.decode()


def test_a_command_given_to_unpack_wins_and_says_nothing(store_root):
    bundle = os.path.join(os.path.dirname(store_root), "given")
    p = imagetool(store_root, "unpack", "--cmd", '["echo", "hi"]', "nocmd", bundle)
    assert p.stderr == b""
    assert _config(bundle)["process"]["args"] == ["echo", "hi"]
    with open(os.path.join(bundle, "imagetool.json")) as f:
        assert "defaultCmd" not in json.load(f)


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
def test_umoci_gives_the_same_default(store_root):
    theirs = os.path.join(os.path.dirname(store_root), "umoci-bundle")
    u = subprocess.run(["umoci", "unpack", "--image", f"{store_root}:{NAME}", theirs],
                       capture_output=True, text=True, timeout=300)
    assert u.returncode == 0, u.stderr
    assert _config(theirs)["process"]["args"] == ["sh"]


def test_run_without_a_command_is_refused(store_root):
    p = imagetool(store_root, "run", "--rm", "--network", "none", "nocmd", check=False)
    assert p.returncode == 125
    err = p.stderr.decode()
    assert len(err.splitlines()) == 1 and "no command specified" in err, err
    assert Records(store_root).ids() == []
    containers = os.path.join(store_root, "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []
    # with a command it runs
    p = imagetool(store_root, "run", "--rm", "--network", "none", "nocmd", "sh", "-c",
                  "echo ran", check=False)
    assert (p.returncode, p.stdout) == (0, b"ran\n"), p.stderr.decode()
