"""Fixtures for the differential suites: one busybox rootfs template per session and a
runc/pyrunc pair per test whose teardown force-deletes every container and fails the test
if either runtime left a state directory or cgroup behind."""

from __future__ import annotations

import pytest

from conformance.pair import Pair
from tests.rig import RUNC, default_config, make_rootfs


@pytest.fixture(scope="session")
def conf_template(tmp_path_factory) -> str:
    return make_rootfs(str(tmp_path_factory.mktemp("conf-template") / "rootfs"))


@pytest.fixture
def pair(conf_template):
    if not RUNC:
        pytest.skip("runc is not installed (apt-get install runc)")
    p = Pair(conf_template)
    try:
        yield p
    finally:
        problems = p.cleanup()
    assert not problems, "left behind: " + "; ".join(problems)


@pytest.fixture
def config() -> dict:
    """runc's `runc spec` defaults as pyrunc writes them, terminal off."""
    return default_config(["true"])
