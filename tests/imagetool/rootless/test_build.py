"""`build` as an ordinary user: RUN in rootless pyrunc, COPY --chown and chown in RUN keep
their owners, an opaque directory from RUN is written as one, and every layer equals the one
root builds from the same Dockerfile (same diff_ids, SOURCE_DATE_EPOCH fixed)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from tests.imagetool.rootless.test_run import _leftovers
from tests.imagetool.storehelp import imagetool, rootfs_tar

DOCKERFILE = """FROM busybox:latest
COPY --chown=1000:1000 f.txt /srv/f.txt
RUN mkdir /srv/d && echo hi > /srv/d/x && chown -R 65534:65534 /srv/d \\
    && rm -r /etc && mkdir /etc && echo new > /etc/only
CMD ["sh"]
"""
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def _layers(inspect_out: str | bytes) -> list[str]:
    return json.loads(inspect_out)[0]["RootFS"]["Layers"]


def test_build_as_user_equals_root_build(subuser):
    u = subuser
    ctx = tempfile.mkdtemp(prefix="itool-rl-ctx-")
    try:
        os.chmod(ctx, 0o755)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        with open(os.path.join(ctx, "f.txt"), "w") as f:
            f.write("owned\n")
        base = rootfs_tar(ctx)
        for p in os.listdir(ctx):
            os.chmod(os.path.join(ctx, p), 0o755 if os.path.isdir(os.path.join(ctx, p))
                     else 0o644)
        root = os.path.join(ctx, "rootstore")
        env = dict(os.environ, **EPOCH)
        imagetool(root, "import", base, "busybox:latest", env=env)
        imagetool(root, "build", "-q", "-t", "app", ctx, env=env, timeout=300)
        want = _layers(imagetool(root, "inspect", "app").stdout)

        r = u.imagetool("import", base, "busybox:latest", env=EPOCH)
        assert r.returncode == 0, r.stderr
        r = u.imagetool("build", "-q", "-t", "app", ctx, env=EPOCH, timeout=300)
        assert r.returncode == 0, r.stderr
        r = u.imagetool("inspect", "app")
        assert r.returncode == 0, r.stderr
        assert _layers(r.stdout) == want
        assert len(want) == 3

        r = u.imagetool("run", "--rm", "--network", "none", "app", "sh", "-c",
                        "stat -c '%n %u:%g' /srv/f.txt /srv/d /srv/d/x; cat /etc/only; "
                        "ls /etc")
        assert r.returncode == 0, r.stderr
        out = r.stdout.split("\n")
        assert out[:4] == ["/srv/f.txt 1000:1000", "/srv/d 65534:65534",
                           "/srv/d/x 65534:65534", "new"]
        # the base's /etc is gone (opaque), only what run mounts there joins /etc/only
        assert "only" in out[4:]
        assert set(filter(None, out[4:])) <= {"only", "hostname", "hosts", "resolv.conf"}
    finally:
        from tests.imagetool.storehelp import unmount_under
        unmount_under(ctx)
        shutil.rmtree(ctx, ignore_errors=True)
    assert _leftovers(u) == []


def test_without_subids_build_run_exec_and_chown_refusal(ruser):
    """No range: the story without network works (files all the user's); COPY --chown to
    another owner fails naming the cause and the command that adds a range."""
    from tests.imagetool.rootless.conftest import REPO
    u = ruser
    d = os.path.join(u.home, "nosub")
    os.makedirs(d)
    os.chmod(d, 0o755)
    base = rootfs_tar(d)
    os.chmod(base, 0o644)
    assert u.imagetool("import", base, "busybox:latest").returncode == 0
    r = u.imagetool("build", "-q", "-t", "app", os.path.join(REPO, "examples", "app"))
    assert r.returncode == 0, r.stderr
    r = u.imagetool("run", "-d", "--name", "w", "--network", "none", "app")
    try:
        assert r.returncode == 0, r.stderr
        r = u.imagetool("exec", "w", "cat", "/srv/www/health.txt")
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
        assert u.imagetool("stop", "-t", "2", "w").returncode == 0
        assert u.imagetool("rm", "w").returncode == 0
    finally:
        u.imagetool("rm", "-f", "w")
    ctx = os.path.join(u.home, "chown")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox:latest\nCOPY --chown=1000:1000 f /f\n")
    with open(os.path.join(ctx, "f"), "w") as f:
        f.write("x")
    for p in (ctx, os.path.join(ctx, "Dockerfile"), os.path.join(ctx, "f")):
        os.chmod(p, 0o755 if p == ctx else 0o644)
    r = u.imagetool("build", "-q", "-t", "c", ctx)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "COPY failed" in last and "usermod --add-subuids 100000-165535" in last, r.stderr
    assert _leftovers(u) == []
