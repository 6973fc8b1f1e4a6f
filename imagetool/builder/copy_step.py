"""COPY and ADD steps: context (or --from stage/image) files written into the mounted overlay.

Docker's rules: a destination ending in `/`, several sources or a wildcard mean "into this
directory", as does an existing directory at the destination; ADD extracts a local tar archive;
--chown names are looked up in the rootfs's own passwd/group files; --chmod is octal or
symbolic (chmod.py); --exclude patterns (.dockerignore syntax) drop wildcard matches and, in a
directory source, paths relative to it. As BuildKit does: a heredoc source (`COPY <<EOF /f`)
is a file named after its delimiter, mode 0644, owned by root unless --chown; an ADD of an
http(s) URL is downloaded (fetch.py: mode 0600, mtime Last-Modified or 0, never extracted)
and its digest, or the --checksum, is part of the step's cache key; an ADD of a git URL
(gitsource.py) adds the checkout's contents (of its :subdir) into the destination directory,
keyed by the commit the ref resolves to. COPY --parents keeps each source's path below the
context root, or below a `/./` pivot in it (parents.py). --link changes nothing in the
result here: the layer is the same as without it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagetool import layers, users

from . import buildcontext, chmod, fetch, gitsource, parents
from . import dockerfile as df
from .dockerignore import DockerIgnore
from .errors import BuildError, fail
from .plan import BuildPlan, Step
from .state import StageState


class CopySteps:
    """Mixin for Builder: COPY and ADD."""

    context: str
    ignore: DockerIgnore
    tmp: str | None
    out: Callable[[str], None]
    _downloads: dict[tuple[str, str | None], fetch.Download] | None = None
    _git_refs: dict[tuple[str, str | None], gitsource.Resolved] | None = None

    if TYPE_CHECKING:  # the Builder this mixes into provides it
        def _mounted(self, chain: list[tuple[dict[str, Any], str]]
                     ) -> contextlib.AbstractContextManager[tuple[str, str]]: ...

    # -- COPY / ADD -----------------------------------------------------------------------------
    def _owner(self, merged: str, chown: str | None, flag: str = "--chown"
               ) -> tuple[int, int] | None:
        """USER[:GROUP] as BuildKit reads it for --chown and for WORKDIR under USER: a name
        is looked up in the rootfs's /etc/passwd (its uid and primary gid) or /etc/group; a
        bare id is used for both. An unknown name is an error naming the flag."""
        if not chown:
            return None
        try:
            return users.chown_ids(chown, layers.read_file_in(merged, "/etc/passwd"),
                                   layers.read_file_in(merged, "/etc/group"))
        except users.ConvertError as e:
            raise BuildError(f"{flag}={chown}: {e}") from None

    def _copy_key_extra(self, p: BuildPlan, step: Step) -> dict[str, Any]:
        """What an ADD of URLs adds to its cache key: per http(s) URL the --checksum if given
        (nothing is downloaded for the key), else the digest and Last-Modified of the
        download, as BuildKit's http source keys it; per git URL the commit its ref resolves
        to now, with the subdir and --keep-git-dir (BuildKit's git source key). Empty for
        everything else, so other keys don't move."""
        ins = step.expanded
        if not isinstance(ins, df.Add):
            return {}
        extra: dict[str, Any] = {}
        urls = [s for s in ins.sources if _is_http(s)]
        got = []
        for url in urls:
            if ins.checksum:
                got.append([url, fetch.url_filename(url), ins.checksum])
            else:
                d = self._download(p, step, url, None)
                got.append([url, d.name, d.digest, d.last_modified])
        if got:
            extra["urls"] = got
        repos = []
        for src in ins.sources:
            if df.is_git_url(src):
                r = self._git_resolve(p, step, src, ins.checksum)
                keep = ins.keep_git_dir and not r.ref.subdir
                repos.append([r.ref.remote, r.commit, r.ref.subdir, keep])
        if repos:
            extra["git"] = repos
        return extra

    def _git_resolve(self, p: BuildPlan, step: Step, src: str, checksum: str | None
                     ) -> gitsource.Resolved:
        """The commit a git source names, asked of the remote once per build (so the step's
        key and its checkout agree); --checksum is checked here, before anything runs."""
        if self._git_refs is None:
            self._git_refs = {}
        known = self._git_refs.get((src, checksum))
        if known is not None:
            return known
        ref = gitsource.parse(src)
        self.out(f"--> resolving {ref.url} {ref.ref or 'HEAD'}")
        try:
            r = gitsource.resolve(ref)
            if checksum is not None:
                gitsource.check_checksum(r, checksum)
        except gitsource.GitError as e:
            raise fail(p, step.instruction, f"ADD failed: {e}") from None
        self._git_refs[(src, checksum)] = r
        return r

    def _add_git(self, p: BuildPlan, step: Step, src: str, merged: str, target: _Target
                 ) -> None:
        """A git source's checkout (or its subdir) copied into the destination directory,
        then removed."""
        ins = step.expanded
        assert isinstance(ins, df.Add) and self.tmp is not None
        r = self._git_resolve(p, step, src, ins.checksum)
        work = os.path.join(self.tmp, f"git-{uuid.uuid4().hex}")
        self.out(f"--> fetching {r.ref.url} {r.commit}")
        try:
            tree = gitsource.checkout(r, work, keep_git_dir=ins.keep_git_dir)
            into = _Target(target.dest, target.dparts, True, target.owner, target.mode,
                           target.exclude)
            self._copy_from(tree, DockerIgnore(), ["."], merged, into, add=False)
        except gitsource.GitError as e:
            raise fail(p, step.instruction, f"ADD failed: {e}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, p: BuildPlan, step: Step, url: str, checksum: str | None
                  ) -> fetch.Download:
        """One download per URL and checksum per build, kept in the build's temp dir."""
        if self._downloads is None:
            self._downloads = {}
        known = self._downloads.get((url, checksum))
        if known is not None:
            return known
        assert self.tmp is not None
        self.out(f"--> downloading {url}")
        try:
            d = fetch.fetch(url, self.tmp, checksum=checksum)
        except fetch.FetchError as e:
            raise fail(p, step.instruction, f"ADD failed: {e}") from None
        self._downloads[(url, checksum)] = d
        return d

    def _copy(self, p: BuildPlan, state: StageState, step: Step, merged: str,
              images: dict[str, dict[str, Any]], states: dict[int, StageState]) -> None:
        ins = step.expanded
        assert isinstance(ins, (df.Copy, df.Add))
        conf = state.config.get("config") or {}
        is_add = isinstance(ins, df.Add)
        remote = [s for s in ins.sources if is_add and _is_http(s)]
        repos = [s for s in ins.sources if is_add and df.is_git_url(s)]
        local = [s for s in ins.sources if s not in remote and s not in repos]
        with_parents = isinstance(ins, df.Copy) and ins.parents
        checksum = ins.checksum if isinstance(ins, df.Add) else None
        # downloads (and --checksum) are checked before anything is written
        downloads = [self._download(p, step, u, checksum) for u in remote]
        try:
            owner = self._owner(merged, ins.chown)
            mode = chmod.compile_mode(ins.chmod) if ins.chmod else None
        except (BuildError, ValueError) as e:
            raise fail(p, step.instruction, f"{ins.NAME}: {e}") from None
        dest = ins.dest
        if not dest.startswith("/"):
            dest = os.path.join(conf.get("WorkingDir") or "/", dest)
        into_dir = with_parents or ins.dest.endswith("/") or ins.dest in (".", "..") \
            or len(ins.sources) + len(ins.heredocs) > 1 \
            or any(buildcontext.has_wildcards(s) for s in local)
        res = layers.Resolver(merged, "rootfs")
        dparts = layers.split_name(dest.lstrip("/"), "rootfs", "destination")
        # an existing directory at dest takes the sources inside it, as docker does
        if not into_dir and dparts:
            try:
                host = res.follow(dest, dest)
                into_dir = stat.S_ISDIR(os.stat(host).st_mode)
            except (FileNotFoundError, NotADirectoryError, layers.LayerError):
                pass
        # COPY --from keeps the source's owners unless --chown (BuildKit); context files are
        # root's
        keep = isinstance(ins, df.Copy) and bool(ins.from_stage) and owner is None
        target = _Target(dest, dparts, into_dir, owner, mode, DockerIgnore(ins.exclude), keep)
        if isinstance(ins, df.Copy) and ins.from_stage:
            src = step.sources[0] if step.sources else None
            if src is not None and src.kind == "stage":
                chain = states[src.stage or 0].chain
            elif src is not None and src.kind == "image":
                chain = images[src.ref]["chain"]
            else:
                raise fail(p, step.instruction, f"COPY --from={ins.from_stage}: unresolved")
            with self._mounted(chain) as (src_root, _):
                self._copy_sources(src_root, DockerIgnore(), local, merged, target,
                                   is_add, with_parents)
        elif local:
            self._copy_sources(self.context, self.ignore, local, merged, target, is_add,
                               with_parents)
        for repo in repos:
            self._add_git(p, step, repo, merged, target)
        for d in downloads:
            self._put_file(merged, target, d.name, d.path, os.stat(d.path))
        for h in ins.heredocs:
            self._put_heredoc(merged, target, h)

    def _put_heredoc(self, merged: str, target: _Target, h: df.Heredoc) -> None:
        """An inline file: BuildKit makes it (0644, now) and copies it like a context file."""
        assert self.tmp is not None
        tmp = os.path.join(self.tmp, f"heredoc-{uuid.uuid4().hex}")
        # body(): expand.py left an expanded body with its tabs stripped already; a quoted
        # delimiter's body is as written, with <<-'s tabs still to strip
        data = h.body().encode("utf-8", "surrogateescape")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(data)
            self._put_file(merged, target, posixpath.basename(h.name) or h.name, tmp,
                           os.stat(tmp))
        finally:
            os.unlink(tmp)

    def _put_file(self, merged: str, target: _Target, name: str, src: str,
                  st: os.stat_result) -> None:
        """One file to the destination: at it, or inside it when it is a directory."""
        res = layers.Resolver(merged, "rootfs")
        if target.into_dir or not target.dparts:
            parts = [*target.dparts, name]
        else:
            parts = target.dparts
        parent = res.host(res.directory(parts[:-1], True, target.dest))
        _own_made(res, target.owner)
        self._put(src, st, os.path.join(parent, parts[-1]), target.owner, target.mode, [],
                  target.keep_owners)

    def _copy_sources(self, root: str, ignore: DockerIgnore, sources: list[str], merged: str,
                      target: _Target, add: bool, with_parents: bool) -> None:
        """Context (or --from) sources: by name, or with --parents by their whole path."""
        if with_parents:
            self._copy_parents(root, ignore, sources, merged, target)
        else:
            self._copy_from(root, ignore, sources, merged, target, add=add)

    def _copy_parents(self, root: str, ignore: DockerIgnore, sources: list[str],
                      merged: str, target: _Target) -> None:
        """COPY --parents: every entry at its path below the source's pivot, the parent
        directories made as copies of the source's (modes, times, --chown/--chmod)."""
        res = layers.Resolver(merged, "rootfs")
        dest, dparts = target.dest, target.dparts
        base = res.host(res.directory(dparts, True, dest))
        _own_made(res, target.owner)
        if target.owner:
            os.chown(base, *target.owner)
        dir_times: list[tuple[str, int]] = []
        for rel, full, st in parents.entries(root, sources, ignore, target.exclude):
            cparts = [*dparts, *rel.split("/")]
            parent = res.host(res.directory(cparts[:-1], True, dest))
            self._put(full, st, os.path.join(parent, cparts[-1]), target.owner, target.mode,
                      dir_times, target.keep_owners)
            if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                res.forget()
        for path, mtime in reversed(dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def _copy_from(self, root: str, ignore: DockerIgnore, sources: list[str], merged: str,
                   target: _Target, add: bool) -> None:
        res = layers.Resolver(merged, "rootfs")
        dest, dparts, owner, mode = target.dest, target.dparts, target.owner, target.mode
        dir_times: list[tuple[str, int]] = []
        excl = target.exclude
        for top, real, full, st in buildcontext.roots(root, sources, ignore, excl):
            if stat.S_ISDIR(st.st_mode):
                base_rel = res.directory(dparts, True, dest)
                base = res.host(base_rel)
                _own_made(res, owner)
                if owner:
                    os.chown(base, *owner)
                for child, entry in ignore.walk(root, real):
                    suffix = child[len(real):].lstrip("/") if real else child
                    if excl and excl.excluded(suffix):
                        continue
                    cparts = [*dparts, *suffix.split("/")]
                    parent = res.host(res.directory(cparts[:-1], True, dest))
                    self._put(entry.path, entry.stat(follow_symlinks=False),
                              os.path.join(parent, cparts[-1]), owner, mode, dir_times,
                              target.keep_owners)
                    if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                        res.forget()
                continue
            if add and stat.S_ISREG(st.st_mode) and _is_tar(full):
                # --chown owns the directories ADD makes for the archive and, as BuildKit
                # v0.23+ does, every entry the archive unpacks (implicit parents stay root's)
                base = res.host(res.directory(dparts, True, dest))
                _own_made(res, owner)
                with open(full, "rb") as f:
                    layers.Applier(base, owner=owner).apply(f, f"ADD {top}")
                res.forget()
                continue
            if stat.S_ISLNK(st.st_mode):
                full, st = os.path.realpath(full), os.stat(full)
            self._put_file(merged, target, os.path.basename(top.rstrip("/")) or top, full, st)
            res.forget()
        for path, mtime in reversed(dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    @staticmethod
    def _put(src: str, st: os.stat_result, dst: str, owner: tuple[int, int] | None,
             mode: chmod.ModeFn | None, dir_times: list[tuple[str, int]],
             keep_owners: bool = False) -> None:
        """One entry to `dst`: owned by --chown's owner, else the source's own (keep_owners,
        for COPY --from), else root."""
        try:
            old = os.lstat(dst)
        except FileNotFoundError:
            old = None
        is_dir = stat.S_ISDIR(st.st_mode)
        if old is not None and not (is_dir and stat.S_ISDIR(old.st_mode)):
            if stat.S_ISDIR(old.st_mode):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        uid, gid = owner if owner else ((st.st_uid, st.st_gid) if keep_owners else (0, 0))
        if is_dir:
            if old is None or not stat.S_ISDIR(old.st_mode):
                os.mkdir(dst, 0o755)
            dir_times.append((dst, int(st.st_mtime)))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            os.chown(dst, uid, gid, follow_symlinks=False)
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
            return
        elif stat.S_ISREG(st.st_mode):
            with open(src, "rb") as fi, open(dst, "xb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
        else:
            return  # devices, fifos and sockets are not copied from a context
        os.chown(dst, uid, gid)
        perm = stat.S_IMODE(st.st_mode)
        os.chmod(dst, mode(perm, is_dir) if mode is not None else perm)
        os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _own_made(res: layers.Resolver, owner: tuple[int, int] | None) -> None:
    """The directories COPY/ADD made on the way to its destination belong to --chown's owner
    (BuildKit makes the destination path as that user); without --chown they stay root's."""
    if owner:
        for rel in res.implicit:
            os.chown(res.host(rel), *owner)
        res.implicit.clear()


@dataclass(frozen=True)
class _Target:
    """Where a COPY/ADD writes, and what it sets on each entry."""

    dest: str                          # absolute, in the rootfs
    dparts: list[str]                  # its components
    into_dir: bool                     # sources go inside dest (else dest is the file)
    owner: tuple[int, int] | None      # --chown
    mode: chmod.ModeFn | None          # --chmod
    exclude: DockerIgnore              # --exclude (empty: nothing)
    keep_owners: bool = False          # COPY --from without --chown: the source's owners


def _is_http(src: str) -> bool:
    """An ADD source fetched over http(s) (a git URL is checked out instead)."""
    return df.is_url(src) and not df.is_git_url(src)


def _is_tar(path: str) -> bool:
    """A local ADD source that is a (possibly compressed) tar archive: extracted."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False

