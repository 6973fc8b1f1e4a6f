"""Fixtures for the CRI suite: one local registry, our images pushed to it, and one
containerd with the CRI plugin per session (handlers `pyrunc` and `runc`, each behind the
argv-logging wrapper); `pods` records what a test makes and checks for leaks after it."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from conformance.cri.cluster import HANDLERS
from conformance.engines.conftest import need, need_overlayfs
from conformance.engines.procs import short_tempdir
from conformance.engines.wrapper import Wrapper
from tests.rig import PYRUNC, RUNC

try:
    import grpc  # noqa: F401
    import grpc_tools  # noqa: F401
    GRPC_MISSING = ""
except ImportError as e:  # the suite needs its client: say so instead of failing to import
    GRPC_MISSING = f"{e.name} is not installed (scripts/install.sh installs it)"
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config) -> str | None:
    return f"conformance/cri: not collected: {GRPC_MISSING}" if GRPC_MISSING else None


@pytest.fixture(scope="session")
def cri_registry():
    """A plain-HTTP docker-registry on 127.0.0.1 (the imagetool suite's Registry)."""
    need("docker-registry")
    from tests.imagetool.conftest import Registry, _settings, free_port
    root = tempfile.mkdtemp(prefix="cri-registry-")
    port = free_port()
    reg = Registry("plain", root, port, _settings(root, port))
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def cri_images(cri_registry, tmp_path_factory) -> dict[str, str]:
    need("gcc")
    from conformance.cri.images import build_and_push
    work = str(tmp_path_factory.mktemp("cri-images"))
    try:
        return build_and_push(work, cri_registry.host)
    finally:
        shutil.rmtree(os.path.join(work, "store"), ignore_errors=True)


@pytest.fixture(scope="session")
def cri_cluster(cri_images, cri_registry, tmp_path_factory):
    """containerd with the CRI plugin; the app image pulled through CRI PullImage."""
    bins = need("containerd", "containerd-shim-runc-v2", "ip")
    need_overlayfs()
    if not RUNC:
        pytest.skip("runc is not installed (apt-get install runc)")
    from conformance.cri.client import CRIClient
    from conformance.cri.cluster import CRIContainerd, cni_bin_source
    if cni_bin_source() is None:
        pytest.skip("containernetworking-plugins not installed (scripts/install.sh)")
    calls = str(tmp_path_factory.mktemp("cri-calls"))
    wrappers = {"pyrunc": Wrapper(os.path.join(calls, "pyrunc"), PYRUNC),
                "runc": Wrapper(os.path.join(calls, "runc"), RUNC)}
    c = CRIContainerd(short_tempdir("pyrunc-cri-"), bins,
                      {h: w.path for h, w in wrappers.items()}, cri_images["pause"],
                      cri_registry.host)
    c.wrappers = wrappers
    try:
        c.start(CRIClient)
        for ref in cri_images.values():
            c.client.pull(ref)
        yield c
    finally:
        problems = c.teardown()
    assert not problems, "CRI teardown: " + "; ".join(problems)


@pytest.fixture(params=HANDLERS)
def handler(request) -> str:
    return request.param


@pytest.fixture
def pods(cri_cluster, cri_images):
    from conformance.cri.pods import Pods
    p = Pods(cri_cluster, cri_images)
    try:
        yield p
    finally:
        problems = p.teardown()
    assert not problems, "left behind: " + "; ".join(problems)


@pytest.fixture(scope="session")
def _observations() -> dict:
    return {}


@pytest.fixture
def same_as_other_handler(request, handler, _observations):
    """same_as_other_handler(key, value): records what this handler's run observed; once
    both handlers' runs of the test have recorded `key`, asserts the two are equal."""
    test = request.node.originalname

    def record(key: str, value: object) -> None:
        seen = _observations.setdefault((test, key), {})
        seen[handler] = value
        if len(seen) == len(HANDLERS):
            assert seen["pyrunc"] == seen["runc"], \
                f"{test}: {key} differs: pyrunc {seen['pyrunc']!r} vs runc {seen['runc']!r}"

    return record
