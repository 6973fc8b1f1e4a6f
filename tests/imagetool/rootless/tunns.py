"""The tests' face of conformance/engines/tunns.py (a private mount namespace with a tun node
of the test's own): the same names, with `tun_namespace` skipping where the host lacks the
tun driver or tools and failing the test when the holder does not come up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from conformance.engines import tunns as _kit
from conformance.engines.procs import Unavailable
from conformance.engines.tunns import (  # noqa: F401 - the tests' names
    TUN,
    TunHolderError,
    TunNs,
    host_has_tun,
    mounts_under,
    tun_mounted,
)


@contextlib.contextmanager
def tun_namespace(mode: int) -> Iterator[TunNs]:
    """conformance.engines.tunns.tun_namespace; skips (naming why) or fails instead of
    raising its errors."""
    try:
        cm = _kit.tun_namespace(mode)
        ns = cm.__enter__()
    except Unavailable as e:
        pytest.skip(str(e))
    except TunHolderError as e:
        pytest.fail(str(e))
    with contextlib.ExitStack() as stack:
        stack.push(cm)
        yield ns
