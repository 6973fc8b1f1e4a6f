"""COPY and ADD steps: context (or --from stage/image) files written into the mounted overlay.

Docker's rules: a destination ending in `/`, several sources or a wildcard mean "into this
directory", as does an existing directory at the destination; ADD extracts a local tar archive;
--chown names are looked up in the rootfs's own passwd/group files; --chmod is octal.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import Any

from imagetool import convert, layers

from . import cachekey
from . import dockerfile as df
from .dockerignore import DockerIgnore
from .errors import BuildError, fail
from .plan import BuildPlan, Step
from .state import StageState


class CopySteps:
    """Mixin for Builder: COPY and ADD."""

    context: str
    ignore: DockerIgnore

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

    def _copy(self, p: BuildPlan, state: StageState, step: Step, merged: str,
              images: dict[str, dict[str, Any]], states: dict[int, StageState]) -> None:
        ins = step.expanded
        assert isinstance(ins, (df.Copy, df.Add))
        conf = state.config.get("config") or {}
        try:
            owner = self._owner(merged, ins.chown)
        except BuildError as e:
            raise fail(p, step.instruction, f"{ins.NAME}: {e}") from None
        mode = int(ins.chmod, 8) if ins.chmod else None
        dest = ins.dest
        if not dest.startswith("/"):
            dest = os.path.join(conf.get("WorkingDir") or "/", dest)
        into_dir = ins.dest.endswith("/") or ins.dest in (".", "..") or len(ins.sources) > 1 \
            or any(cachekey.has_wildcards(s) for s in ins.sources)
        res = layers.Resolver(merged, "rootfs")
        dparts = layers.split_name(dest.lstrip("/"), "rootfs", "destination")
        # an existing directory at dest takes the sources inside it, as docker does
        if not into_dir and dparts:
            try:
                host = res.follow(dest, dest)
                into_dir = stat.S_ISDIR(os.stat(host).st_mode)
            except (FileNotFoundError, NotADirectoryError, layers.LayerError):
                pass
        if isinstance(ins, df.Copy) and ins.from_stage:
            src = step.sources[0] if step.sources else None
            if src is not None and src.kind == "stage":
                chain = states[src.stage or 0].chain
            elif src is not None and src.kind == "image":
                chain = images[src.ref]["chain"]
            else:
                raise fail(p, step.instruction, f"COPY --from={ins.from_stage}: unresolved")
            with self._mounted(chain) as (src_root, _):
                self._copy_from(src_root, DockerIgnore(), ins, merged, dest, dparts, into_dir,
                                owner, mode, add=False)
        else:
            self._copy_from(self.context, self.ignore, ins, merged, dest, dparts, into_dir,
                            owner, mode, add=isinstance(ins, df.Add))

    def _copy_from(self, root: str, ignore: DockerIgnore, ins: df.Copy | df.Add, merged: str,
                   dest: str, dparts: list[str], into_dir: bool,
                   owner: tuple[int, int] | None, mode: int | None, add: bool) -> None:
        res = layers.Resolver(merged, "rootfs")
        dir_times: list[tuple[str, int]] = []
        for top, real, full, st in cachekey._roots(root, ins.sources, ignore):
            if stat.S_ISDIR(st.st_mode):
                base_rel = res.directory(dparts, True, dest)
                base = res.host(base_rel)
                if owner:
                    os.chown(base, *owner)
                for child, entry in ignore.walk(root, real):
                    suffix = child[len(real):].lstrip("/") if real else child
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
            if into_dir or not dparts:
                parts = [*dparts, os.path.basename(top.rstrip("/")) or top]
            else:
                parts = dparts
            parent = res.host(res.directory(parts[:-1], True, dest))
            real_st = os.stat(full) if stat.S_ISLNK(st.st_mode) else st
            self._put(os.path.realpath(full) if stat.S_ISLNK(st.st_mode) else full, real_st,
                      os.path.join(parent, parts[-1]), owner, mode, dir_times)
            res.forget()
        for path, mtime in reversed(dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    @staticmethod
    def _put(src: str, st: os.stat_result, dst: str, owner: tuple[int, int] | None,
             mode: int | None, dir_times: list[tuple[str, int]]) -> None:
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
        os.chmod(dst, mode if mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _is_tar(path: str) -> bool:
    """A local ADD source that is a (possibly compressed) tar archive: extracted."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False

