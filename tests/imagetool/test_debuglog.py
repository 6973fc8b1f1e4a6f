"""`imagetool --debug`: debug records through `logging` on stderr (each registry exchange,
each build cache decision), and `logging` not even imported without --debug."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.imagetool.builder.buildhelp import busybox_store, write_context
from tests.imagetool.storehelp import imagetool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _logging_loaded(root: str, *flags: str) -> bool:
    code = ("import sys; from imagetool import cli; "
            f"rc = cli.main([*{list(flags)!r}, '--root', {root!r}, 'images']); "
            "print('logging' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()[-2:]
    assert out[1] == "0", out
    return out[0] == "True"


def test_logging_only_with_debug(tmp_path):
    root = str(tmp_path / "store")
    assert not _logging_loaded(root)
    assert _logging_loaded(root, "--debug")


def test_debug_logs_registry_requests_and_cache_decisions(registry):
    reg = registry("plain")
    with busybox_store("imagetool-debuglog-") as env:
        root = env["root"]
        quiet = imagetool(root, "push", "-q", "busybox:latest", reg.ref("dbg/busybox:v1"))
        assert b"DEBUG" not in quiet.stderr
        p = imagetool(root, "--debug", "push", "-q", "busybox:latest", reg.ref("dbg/bb:v2"))
        err = p.stderr.decode()
        assert f"imagetool DEBUG registry: PUT http://{reg.host}/v2/dbg/bb/manifests/v2 -> 201" \
            in err, err
        assert "(pooled connection)" in err  # keep-alive: later requests reuse one

        ctx = write_context(env["dir"], "FROM busybox\nCOPY a /a\n", {"a": "x"})
        first = imagetool(root, "--debug", "build", "-q", "--pull-never", "-t", "d:1", ctx,
                          timeout=300).stderr.decode()
        assert "imagetool DEBUG build: cache miss sha256:" in first and ": no record" in first
        again = imagetool(root, "--debug", "build", "-q", "--pull-never", "-t", "d:1", ctx,
                          timeout=300).stderr.decode()
        assert "imagetool DEBUG build: cache hit sha256:" in again, again
        assert "cache miss" not in again
