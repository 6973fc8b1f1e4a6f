"""Rootless fixtures: a system user made by the test (removed afterwards, also on failure),
with or without a subordinate id range, through conformance/engines/rootless_user.py (the kit
the bench shares); its Unavailable becomes a skip here. The user runs imagetool through
runuser with a private HOME and XDG_RUNTIME_DIR under a temp directory removed as root (so
files owned by subordinate ids go too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.engines.procs import Unavailable
from conformance.engines.rootless_user import (  # noqa: F401 - the tests' names
    PY,
    REPO,
    SUBRANGE,
    RootlessUser,
    rootless_user,
)
from conformance.engines.rootless_user import (  # noqa: F401 - test_story's name
    kill_user_processes as _kill_users_processes,
)


def _make_user(name: str, subids: bool) -> Iterator[RootlessUser]:
    """conformance.engines.rootless_user.rootless_user as a fixture body; skips (naming why)
    where the host cannot make or use the user."""
    try:
        cm = rootless_user(name, subids)
        u = cm.__enter__()
    except Unavailable as e:
        pytest.skip(str(e))
    try:
        yield u
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def ruser() -> Iterator[RootlessUser]:
    """A user with no subordinate ids."""
    yield from _make_user("itool-rl-plain", subids=False)


@pytest.fixture(scope="module")
def subuser() -> Iterator[RootlessUser]:
    """A user with 65536 subordinate uids and gids from 420000."""
    yield from _make_user("itool-rl-sub", subids=True)
