"""ADD <git URL>: a repository checked out as BuildKit's git source checks it out.

`URL#ref:subdir` names the remote, the ref (a branch, a tag or a full commit sha; empty is
the remote's HEAD) and the subdirectory whose contents are added. The ref is resolved with
`git ls-remote` (a full sha is taken as is) so the commit can be part of the step's cache
key before anything is fetched; `--checksum` is a hex prefix of that commit (or of the
annotated tag object) and pins it. The checkout is a shallow fetch of that one commit; its
`.git` is kept only with --keep-git-dir and no subdirectory (detached HEAD, origin set to
the URL), as BuildKit keeps it. Files get git's modes (0644/0755, symlinks kept), written
under umask 022 whatever the caller's. Submodules are not fetched.

The `git` CLI runs with no user or system config, no terminal prompts, no stdin, the file
and ext transports off, in its own process group that is killed when a timeout expires.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import urllib.parse
from dataclasses import dataclass

from imagetool.errors import ImagetoolError

RESOLVE_TIMEOUT = 120.0        # seconds for `git ls-remote`
FETCH_TIMEOUT = 30 * 60.0      # seconds for a fetch or a checkout
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSH_AUTH_SOCK", "HTTP_PROXY", "HTTPS_PROXY",
             "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy",
             "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR")
_CONFIG = ("protocol.file.allow=never", "protocol.ext.allow=never", "credential.helper=",
           "core.hooksPath=" + os.devnull, "core.fsmonitor=false", "core.autocrlf=false",
           "core.symlinks=true", "init.defaultBranch=master", "advice.detachedHead=false",
           "submodule.recurse=false", "fetch.recurseSubmodules=false",
           "http.lowSpeedLimit=1", "http.lowSpeedTime=60")


class GitError(ImagetoolError):
    """A git source that could not be resolved or checked out; the message names the URL."""


@dataclass(frozen=True)
class GitRef:
    remote: str                # the URL without its fragment
    ref: str                   # as written; "" for the remote's HEAD
    subdir: str                # cleaned, relative; "" for the repository's root

    @property
    def url(self) -> str:
        """The remote with any credentials left out, for messages and .git/config."""
        return redact(self.remote)


@dataclass(frozen=True)
class Resolved:
    ref: GitRef
    commit: str                # the full sha the ref names
    name: str                  # the full ref name fetched (refs/heads/x, HEAD), "" for a sha
    tag: str = ""              # the annotated tag object's sha, when the ref is one


def parse(src: str) -> GitRef:
    """`remote#ref:subdir` (BuildKit's fragment syntax); ValueError for a bad subdir."""
    remote, _, fragment = src.partition("#")
    ref, _, subdir = fragment.partition(":")
    clean = os.path.normpath("/" + subdir).lstrip("/") if subdir else ""
    if clean in (".", ""):
        clean = ""
    return GitRef(remote=remote, ref=ref, subdir=clean)


def redact(remote: str) -> str:
    parts = urllib.parse.urlsplit(remote)
    if parts.scheme and parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:xxxxx@{host}"))
    return remote


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_ASKPASS="", SSH_ASKPASS="", HOME=os.devnull, LC_ALL="C")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env.setdefault("PATH", os.defpath)
    return env


def git(args: list[str], *, url: str, cwd: str | None = None,
        timeout: float = FETCH_TIMEOUT) -> str:
    """Run `git args`; its stdout, or GitError with git's own complaint and the URL."""
    cmd = ["git", *(x for c in _CONFIG for x in ("-c", c)), *args]
    try:
        p = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, umask=0o022)
    except OSError as e:
        raise GitError(f"{url}: cannot run git: {e}") from None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise GitError(f"{url}: git {args[0]} took longer than {timeout:.0f}s") from None
    if p.returncode != 0:
        lines = [x.strip() for x in err.decode("utf-8", "replace").splitlines() if x.strip()]
        why = "; ".join(lines[-3:]) or f"exit status {p.returncode}"
        raise GitError(f"{url}: git {args[0]} failed: {why}")
    return out.decode("utf-8", "replace")


def resolve(ref: GitRef) -> Resolved:
    """The commit `ref` names now on the remote (ls-remote); a full sha is taken as is.
    A name is looked up as given (HEAD, refs/...), then as a branch, then as a tag."""
    if _SHA.match(ref.ref):
        return Resolved(ref=ref, commit=ref.ref, name="")
    want = ref.ref or "HEAD"
    out = git(["ls-remote", "--", ref.remote, want, want + "^{}"], url=ref.url,
              timeout=RESOLVE_TIMEOUT)
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            found[name] = sha
    for name in (want, f"refs/heads/{want}", f"refs/tags/{want}"):
        if name in found:
            peeled = found.get(name + "^{}")
            if peeled:   # an annotated tag: the commit it points at
                return Resolved(ref=ref, commit=peeled, name=name, tag=found[name])
            return Resolved(ref=ref, commit=found[name], name=name)
    raise GitError(f"{ref.url}: unknown ref {want!r}: the repository has no such branch or "
                   "tag (a commit must be given as its full sha)")


def check_checksum(r: Resolved, checksum: str) -> None:
    """--checksum pins the commit: a hex prefix of its sha, or of the annotated tag's."""
    want = checksum.lower()
    if want and any(x.startswith(want) for x in (r.commit, r.tag) if x):
        return
    got = f"{r.tag} or {r.commit}" if r.tag else r.commit
    raise GitError(f"{r.ref.url}: expected checksum to match {checksum}, got {got}")


def checkout(r: Resolved, directory: str, *, keep_git_dir: bool) -> str:
    """Check out r.commit into the new `directory`; the path whose contents ADD copies
    (the directory or its subdir). The .git stays only if kept and there is no subdir."""
    url = r.ref.url
    os.makedirs(directory, mode=0o755)
    git(["init", "-q", directory], url=url)

    def run(*args: str) -> str:
        return git(list(args), url=url, cwd=directory)

    run("remote", "add", "origin", r.ref.remote)
    if r.name.startswith(("refs/heads/", "refs/tags/")):
        spec = f"+{r.name}:{r.name}"
    else:
        spec = r.name or r.commit
    # --update-head-ok: the new repository's unborn branch may be the one fetched
    run("fetch", "-q", "--update-head-ok", "--depth=1", "--no-tags", "origin", spec)
    if run("rev-parse", "--verify", "-q", "FETCH_HEAD^{commit}").strip() != r.commit:
        try:   # the ref moved after it was resolved: the commit the key names is wanted
            run("fetch", "-q", "--update-head-ok", "--depth=1", "--no-tags", "origin",
                r.commit)
        except GitError:
            raise GitError(f"{url}: {r.ref.ref or 'HEAD'} no longer points at {r.commit}, "
                           "which the server won't send by itself") from None
    try:
        run("checkout", "-q", "--detach", r.commit)
    except GitError as e:
        raise GitError(f"{url}: commit {r.commit} not found: {e}") from None
    if keep_git_dir and not r.ref.subdir:
        run("remote", "set-url", "origin", url)
        run("reflog", "expire", "--all", "--expire=now")
        return directory
    shutil.rmtree(os.path.join(directory, ".git"))
    return _subdir(r, directory)


def _subdir(r: Resolved, directory: str) -> str:
    """The subdir in the checkout, every part of it a real directory (BuildKit's rule)."""
    path = directory
    for part in r.ref.subdir.split("/") if r.ref.subdir else []:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise GitError(f"{r.ref.url}: no directory {r.ref.subdir!r} in commit "
                           f"{r.commit}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise GitError(f"{r.ref.url}: {r.ref.subdir!r} in commit {r.commit} is not a "
                           "directory")
    return path
