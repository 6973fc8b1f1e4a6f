"""docs/kubernetes.md shows examples/kubernetes/ verbatim, and the containerd fragment there
declares the handler the way the CRI suite's containerd does (conformance/cri/cluster.py)."""

from __future__ import annotations

import os
import re
import tomllib

from conformance.cri.cluster import CRIContainerd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples", "kubernetes")
FILES = ("containerd-config.toml", "hosts.toml", "runtimeclass.yaml", "pod.yaml")


def _read(*parts: str) -> str:
    with open(os.path.join(*parts)) as f:
        return f.read()


def test_doc_shows_the_examples_verbatim():
    doc = _read(REPO, "docs", "kubernetes.md")
    for name in FILES:
        assert _read(EXAMPLES, name) in doc, f"docs/kubernetes.md differs from {name}"


def test_example_config_matches_the_suites_containerd(tmp_path):
    example = tomllib.loads(_read(EXAMPLES, "containerd-config.toml"))
    runtimes = example["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    c = CRIContainerd.__new__(CRIContainerd)
    c.top, c.sock, c.sandbox_image = str(tmp_path), str(tmp_path / "s"), "pause"
    c.handlers = {"pyrunc": "/x/pyrunc", "runc": "/usr/sbin/runc"}
    c.cni_bin = c.cni_conf = str(tmp_path)
    ours = tomllib.loads(c.config_toml(str(tmp_path)))
    suite = ours["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["pyrunc"]
    assert runtimes["pyrunc"]["runtime_type"] == suite["runtime_type"] == "io.containerd.runc.v2"
    assert set(runtimes["pyrunc"]["options"]) <= set(suite["options"])
    assert runtimes["pyrunc"]["options"]["SystemdCgroup"] is False
    handler = re.search(r"^handler: (\S+)$", _read(EXAMPLES, "runtimeclass.yaml"), re.M)
    name = re.search(r"^  name: (\S+)$", _read(EXAMPLES, "runtimeclass.yaml"), re.M)
    assert handler and handler.group(1) in runtimes
    assert name and f"runtimeClassName: {name.group(1)}" in _read(EXAMPLES, "pod.yaml")
