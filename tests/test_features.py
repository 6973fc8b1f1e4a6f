"""`features` describes what pyrunc does, checked against what the code accepts."""

from __future__ import annotations

import json
import subprocess

from runtime.linux.capabilities import CAP_NUMBER
from runtime.linux.mounts import parse_options
from tests.rig import PYRUNC


def _features() -> dict:
    return json.loads(subprocess.run([PYRUNC, "features"], capture_output=True,
                                     check=True).stdout)


def test_features_document():
    f = _features()
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"].startswith("1.")
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                          "poststart", "poststop"]
    linux = f["linux"]
    assert set(linux["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "user",
                                        "cgroup"}
    assert all(c in CAP_NUMBER for c in linux["capabilities"])
    assert linux["cgroup"]["v1"] and not linux["cgroup"]["systemd"]
    assert linux["apparmor"] == {"enabled": False}


def test_every_listed_mount_option_is_understood():
    for opt in _features()["mountOptions"]:
        o = parse_options([opt])
        assert not o.data, f"{opt} would reach the kernel as filesystem data"


def test_checkpoint_is_a_clear_error():
    p = subprocess.run([PYRUNC, "checkpoint", "--image-path", "/x", "--leave-running", "id"],
                       capture_output=True)
    assert p.returncode != 0 and b"not supported" in p.stderr and b"CRIU" in p.stderr
