"""COPY and ADD steps: context (or --from stage/image) files written into the mounted overlay.

Docker's rules: a destination ending in `/`, several sources or a wildcard mean "into this
directory", as does an existing directory at the destination; ADD extracts a local tar archive;
--chown names are looked up in the rootfs's own passwd/group files; --chmod is octal or
symbolic (chmod.py); --exclude patterns (.dockerignore syntax) drop wildcard matches and, in a
directory source, paths relative to it. As BuildKit does: a heredoc source (`COPY <<EOF /f`)
is a file named after its delimiter, mode 0644, owned by root unless --chown; an ADD of an
http(s) URL is downloaded (fetch.py: mode 0600, mtime Last-Modified or 0, never extracted)
and its digest, or the --checksum, is part of the step's cache key. --link changes nothing in
the result here: the layer is the same as without it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagetool import convert, layers

from . import cachekey, chmod, fetch
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

    # -- COPY / ADD -----------------------------------------------------------------------------
    def _owner(self, merged: str, chown: str | None) -> tuple[int, int] | None:
        if not chown:
            return None
        user, _, group = chown.partition(":")
        passwd = convert._table(layers.read_file_in(merged, "/etc/passwd"))
        groups = convert._table(layers.read_file_in(merged, "/etc/group"))

        def look(name: str, table: list[list[str]], what: str) -> int:
            if name.isdigit():
                return int(name)
            for r in table:
                if len(r) >= 3 and r[0] == name and r[2].isdigit():
                    return int(r[2])
            raise BuildError(f"--chown={chown}: unable to find {what} {name}: no matching "
                             f"entries in the {what} file")
        uid = look(user, passwd, "user") if user else 0
        gid = look(group, groups, "group") if group else uid
        return uid, gid

    def _copy_key_extra(self, p: BuildPlan, step: Step) -> dict[str, Any]:
        """What an ADD of URLs adds to its cache key: per URL the --checksum if given (nothing
        is downloaded for the key), else the digest and Last-Modified of the download, as
        BuildKit's http source keys it. Empty for everything else, so other keys don't move."""
        ins = step.expanded
        if not isinstance(ins, df.Add):
            return {}
        urls = [s for s in ins.sources if _is_http(s)]
        if not urls:
            return {}
        got = []
        for url in urls:
            if ins.checksum:
                got.append([url, fetch.url_filename(url), ins.checksum])
            else:
                d = self._download(p, step, url, None)
                got.append([url, d.name, d.digest, d.last_modified])
        return {"urls": got}

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
        local = [s for s in ins.sources if s not in remote]
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
        into_dir = ins.dest.endswith("/") or ins.dest in (".", "..") \
            or len(ins.sources) + len(ins.heredocs) > 1 \
            or any(cachekey.has_wildcards(s) for s in local)
        res = layers.Resolver(merged, "rootfs")
        dparts = layers.split_name(dest.lstrip("/"), "rootfs", "destination")
        # an existing directory at dest takes the sources inside it, as docker does
        if not into_dir and dparts:
            try:
                host = res.follow(dest, dest)
                into_dir = stat.S_ISDIR(os.stat(host).st_mode)
            except (FileNotFoundError, NotADirectoryError, layers.LayerError):
                pass
        target = _Target(dest, dparts, into_dir, owner, mode, DockerIgnore(ins.exclude))
        if isinstance(ins, df.Copy) and ins.from_stage:
            src = step.sources[0] if step.sources else None
            if src is not None and src.kind == "stage":
                chain = states[src.stage or 0].chain
            elif src is not None and src.kind == "image":
                chain = images[src.ref]["chain"]
            else:
                raise fail(p, step.instruction, f"COPY --from={ins.from_stage}: unresolved")
            with self._mounted(chain) as (src_root, _):
                self._copy_from(src_root, DockerIgnore(), local, merged, target, add=False)
        elif local:
            self._copy_from(self.context, self.ignore, local, merged, target, add=is_add)
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
        self._put(src, st, os.path.join(parent, parts[-1]), target.owner, target.mode, [])

    def _copy_from(self, root: str, ignore: DockerIgnore, sources: list[str], merged: str,
                   target: _Target, add: bool) -> None:
        res = layers.Resolver(merged, "rootfs")
        dest, dparts, owner, mode = target.dest, target.dparts, target.owner, target.mode
        dir_times: list[tuple[str, int]] = []
        excl = target.exclude
        for top, real, full, st in cachekey._roots(root, sources, ignore, excl):
            if stat.S_ISDIR(st.st_mode):
                base_rel = res.directory(dparts, True, dest)
                base = res.host(base_rel)
                if owner:
                    os.chown(base, *owner)
                for child, entry in ignore.walk(root, real):
                    suffix = child[len(real):].lstrip("/") if real else child
                    if excl and excl.excluded(suffix):
                        continue
                    cparts = [*dparts, *suffix.split("/")]
                    parent = res.host(res.directory(cparts[:-1], True, dest))
                    self._put(entry.path, entry.stat(follow_symlinks=False),
                              os.path.join(parent, cparts[-1]), owner, mode, dir_times)
                    if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                        res.forget()
                continue
            if add and stat.S_ISREG(st.st_mode) and _is_tar(full):
                base = res.host(res.directory(dparts, True, dest))
                with open(full, "rb") as f:
                    layers.Applier(base).apply(f, f"ADD {top}")
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
             mode: chmod.ModeFn | None, dir_times: list[tuple[str, int]]) -> None:
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
        uid, gid = owner if owner else (0, 0)
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


@dataclass(frozen=True)
class _Target:
    """Where a COPY/ADD writes, and what it sets on each entry."""

    dest: str                          # absolute, in the rootfs
    dparts: list[str]                  # its components
    into_dir: bool                     # sources go inside dest (else dest is the file)
    owner: tuple[int, int] | None      # --chown
    mode: chmod.ModeFn | None          # --chmod
    exclude: DockerIgnore              # --exclude (empty: nothing)


def _is_http(src: str) -> bool:
    """An ADD source fetched over http(s); git URLs are refused before the build starts."""
    return df.is_url(src) and not df.is_git_url(src)


def _is_tar(path: str) -> bool:
    """A local ADD source that is a (possibly compressed) tar archive: extracted."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False

