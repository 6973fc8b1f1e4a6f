"""ADD <git URL> and COPY --parents as BuildKit does them, on real builds over a busybox image
in a private store. The git tests serve a repository made here (commits, an annotated tag, a
branch, a subdir, an executable and a symlink) with `git daemon` on 127.0.0.1, started and
stopped here by pid, and check the layers' members (names, modes, owners, the symlink, .git
only with --keep-git-dir), the cache (same commit hits, a new commit misses), --checksum and
the errors. The --parents tests check the paths each pattern gives, the `/./` pivot too."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time

import pytest

from imagetool import bundle
from imagetool.builder import gitsource, parents
from imagetool.builder.dockerfile import is_git_url
from imagetool.builder.executor import BuildError
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import builds, busybox_store
from tests.imagetool.conftest import free_port

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_AUTHOR_DATE": "1600000000 +0000", "GIT_COMMITTER_DATE": "1600000000 +0000"}


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def env():
    with busybox_store("itgit-") as e:
        yield e


@pytest.fixture
def build(env):
    with builds(env, tag="git:latest") as run:
        yield run


def _git(repo: str, *args: str) -> str:
    p = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                       timeout=30, env={**os.environ, **GIT_ENV}, check=True)
    return p.stdout.strip()


def _write(path: str, data: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)
    os.chmod(path, mode)


class _Repo:
    """repo.git under a base path: main (c1, c2), annotated tag v1 at c1, branch dev at c2."""

    def __init__(self, base: str) -> None:
        self.path = os.path.join(base, "repo.git")
        os.makedirs(self.path)
        _git(self.path, "init", "-q", "-b", "main")
        _write(os.path.join(self.path, "README"), "one\n")
        _write(os.path.join(self.path, "bin/run.sh"), "#!/bin/sh\necho run\n", 0o775)
        _write(os.path.join(self.path, "sub/inner.txt"), "inner\n", 0o600)
        _write(os.path.join(self.path, "sub/deep/x.txt"), "x\n")
        os.symlink("README", os.path.join(self.path, "link"))
        self.c1 = self.commit("c1")
        _git(self.path, "tag", "-a", "v1", "-m", "v1")
        self.tag = _git(self.path, "rev-parse", "v1")
        _write(os.path.join(self.path, "README"), "two\n")
        self.c2 = self.commit("c2")
        _git(self.path, "branch", "dev")
        _git(self.path, "branch", "master", self.c1)

    def commit(self, msg: str) -> str:
        _git(self.path, "add", "-A")
        _git(self.path, "commit", "-q", "-m", msg)
        return _git(self.path, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(env):
    """The repository served by a git daemon on 127.0.0.1 (killed by pid at the end)."""
    base = tempfile.mkdtemp(prefix="repos-", dir=env["dir"])
    r = _Repo(base)
    port = free_port()
    log = open(os.path.join(env["dir"], "git-daemon.log"), "wb")
    proc = subprocess.Popen(["git", "daemon", "--listen=127.0.0.1", f"--port={port}",
                             f"--base-path={base}", "--export-all", "--reuseaddr", base],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            env={**os.environ, **GIT_ENV}, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        r.url = f"git://127.0.0.1:{port}/repo.git"  # type: ignore[attr-defined]
        yield r
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def _members(store: Store, desc: dict) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.rstrip("/")] = (m, f.read() if f else None)
    return out


def _layers(store: Store, name: str = "git:latest") -> list[dict]:
    """The built layers' members, base layer left out."""
    parts = bundle.image_parts(store, f"docker.io/library/{name}")
    return [_members(store, desc) for desc, _ in parts["chain"][1:]]


def _under(layer: dict, top: str) -> list[str]:
    return sorted(k[len(top) + 1:] for k in layer if k.startswith(top + "/"))


# ------------------------------------------------------------------ ADD <git URL>

@root_only
@needs_git
def test_add_git_ref_subdir_keep_git_dir_and_checksum(env, build, repo):
    u = repo.url
    df = ("FROM busybox\n"
          f"ADD {u}#v1 /src\n"
          f"ADD {u}#main:sub /sub/\n"
          f"ADD --keep-git-dir {u}#dev /kept\n"
          f"ADD {u}#master /master\n"
          f"ADD --chown=1000:1000 --checksum={repo.c1[:12]} {u}#{repo.c1} /pinned\n"
          f"ADD --keep-git-dir --checksum={repo.tag} {u}#v1:sub/deep /deep\n")
    b, store = build(df)
    src, sub, kept, master, pinned, deep = _layers(store)
    assert _under(src, "src") == ["README", "bin", "bin/run.sh", "link", "sub", "sub/deep",
                                  "sub/deep/x.txt", "sub/inner.txt"]
    m, data = src["src/README"]
    assert data == b"one\n" and (m.mode, m.uid, m.gid) == (0o644, 0, 0)   # the tag's commit
    assert src["src/bin/run.sh"][0].mode == 0o755
    assert src["src/sub/inner.txt"][0].mode == 0o644     # git keeps only the x bit
    assert src["src/bin"][0].isdir() and src["src/bin"][0].mode == 0o755
    m, _ = src["src/link"]
    assert m.issym() and m.linkname == "README"
    assert _under(sub, "sub") == ["deep", "deep/x.txt", "inner.txt"]   # the subdir's contents
    names = _under(kept, "kept")
    assert kept["kept/README"][1] == b"two\n" and "link" in names
    assert ".git/HEAD" in names and ".git/config" in names
    assert kept["kept/.git/HEAD"][1].decode().strip() == repo.c2       # detached at the commit
    assert u.encode() in kept["kept/.git/config"][1]
    assert master["master/README"][1] == b"one\n"       # the new repository's own branch
    m, data = pinned["pinned/README"]
    assert data == b"one\n" and (m.uid, m.gid) == (1000, 1000)
    assert pinned["pinned/link"][0].uid == 1000 and ".git" not in _under(pinned, "pinned")
    assert _under(deep, "deep") == ["x.txt"]             # a subdir: .git is never kept


@root_only
@needs_git
def test_add_git_cache_follows_the_commit(env, build, repo):
    df = f"FROM busybox\nADD {repo.url}#dev /cached\nRUN cat /cached/README > /out\n"
    b, store = build(df)
    assert _layers(store)[0]["cached/README"][1] == b"two\n"
    b2, _ = build(df)
    assert b2.cached == 2 and b2.containers == 0 and b2.result.manifest == b.result.manifest
    # a new commit on the branch: that ADD and what follows miss
    _write(os.path.join(repo.path, "README"), "three\n")
    _git(repo.path, "checkout", "-q", "dev")
    try:
        c3 = repo.commit("c3")
    finally:
        _git(repo.path, "checkout", "-q", "main")
    b3, store = build(df)
    assert b3.cached == 0 and b3.containers == 1
    assert _layers(store)[0]["cached/README"][1] == b"three\n"
    assert b3.result.manifest != b.result.manifest
    # a full sha is taken as is; an annotated tag resolves to its commit
    assert gitsource.resolve(gitsource.parse(f"{repo.url}#{c3}")).commit == c3
    r = gitsource.resolve(gitsource.parse(f"{repo.url}#v1"))
    assert (r.commit, r.tag, r.name) == (repo.c1, repo.tag, "refs/tags/v1")


@root_only
@needs_git
@pytest.mark.parametrize("suffix,flags,text", [
    ("#nosuch", "", "unknown ref 'nosuch'"),
    ("#main:nodir", "", "no directory 'nodir'"),
    ("#main:README", "", "is not a directory"),
    ("#v1", "--checksum=deadbeef ", "expected checksum to match deadbeef"),
])
def test_add_git_errors_name_line_and_url(env, build, repo, suffix, flags, text):
    with pytest.raises(BuildError) as ei:
        build(f"FROM busybox\nWORKDIR /w\nADD {flags}{repo.url}{suffix} /d\n", tag="bad:git")
    msg = str(ei.value)
    assert "Dockerfile:3" in msg and repo.url in msg and text in msg, msg


@root_only
@needs_git
def test_add_git_unreachable(env, build):
    url = f"git://127.0.0.1:{free_port()}/repo.git"
    with pytest.raises(BuildError) as ei:
        build(f"FROM busybox\nADD {url}#main /d\n", tag="bad:git")
    msg = str(ei.value)
    assert "Dockerfile:2" in msg and url in msg and "ls-remote failed" in msg, msg


@pytest.mark.parametrize("src,git", [
    ("git://host/r.git", True), ("ssh://git@host/r", True), ("git@github.com:o/r.git", True),
    ("me@host:path/r#main", True), ("https://host/r.git#v1:sub", True),
    ("https://host/r.git?x=1", True), ("https://host/file.tar.gz", False),
    ("dir/a@b.txt", False), ("-x@host:r", False),
])
def test_is_git_url(src, git):
    assert is_git_url(src) is git


def test_parse_git_fragment():
    r = gitsource.parse("https://u:secret@host/r.git#v1:a/../b/")
    assert (r.remote, r.ref, r.subdir) == ("https://u:secret@host/r.git", "v1", "b")
    assert "secret" not in r.url
    assert gitsource.parse("git@host:r.git").ref == "" and gitsource.parse("x#:.").subdir == ""


# ------------------------------------------------------------------ COPY --parents

FILES = {"x/a.txt": "xa\n", "y/a.txt": "ya\n", "x/y/b.txt": "b\n", "x/y/c.md": "c\n",
         "x/y/z/d.txt": "d\n", "top.md": "top\n"}


@root_only
def test_copy_parents(env, build):
    df = ("FROM busybox AS base\n"
          "COPY x /app/x\n"
          "FROM busybox\n"
          "COPY --parents ./x/a.txt ./y/a.txt /parents/\n"
          "COPY --parents ./x/./y/*.txt /pivot/\n"
          "COPY --parents x/y /dir\n"
          "COPY --parents **/*.md /md/\n"
          "COPY --parents --exclude=**/z x/./y /ex/\n"
          "COPY --from=base --parents /app/./x/y/*.txt /from/\n"
          "COPY x/a.txt y/a.txt /flat/\n")
    b, store = build(df, FILES)
    par, piv, dir_, md, ex, frm, flat = _layers(store)
    assert _under(par, "parents") == ["x", "x/a.txt", "y", "y/a.txt"]
    assert par["parents/x/a.txt"][1] == b"xa\n" and par["parents/y/a.txt"][1] == b"ya\n"
    assert par["parents/x"][0].isdir() and par["parents/x"][0].mode == 0o755
    assert _under(piv, "pivot") == ["y", "y/b.txt"]
    assert _under(dir_, "dir") == ["x", "x/y", "x/y/b.txt", "x/y/c.md", "x/y/z",
                                   "x/y/z/d.txt"]
    assert _under(md, "md") == ["top.md", "x", "x/y", "x/y/c.md"]
    assert _under(ex, "ex") == ["y", "y/b.txt", "y/c.md"]
    assert _under(frm, "from") == ["x", "x/y", "x/y/b.txt"]
    assert _under(flat, "flat") == ["a.txt"]     # without --parents the names collide
    b2, _ = build(df, FILES)
    assert b2.cached == b.steps == 8 and b2.result.manifest == b.result.manifest


def test_parents_split():
    assert parents.split("./x/./y/*.txt") == ("x", "y/*.txt")
    assert parents.split("x/a.txt") == ("", "x/a.txt")
    assert parents.split("/app/./dist/") == ("app", "dist")


def test_parents_missing_source_is_an_error(tmp_path):
    (tmp_path / "x").mkdir()
    assert list(parents.entries(str(tmp_path), ["x/*.none"], parents.DockerIgnore())) == []
    with pytest.raises(parents.SourceError):
        list(parents.entries(str(tmp_path), ["x/./missing"], parents.DockerIgnore()))
