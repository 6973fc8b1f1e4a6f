"""The one in-root path resolver: a path inside a root directory resolved the way a process
chrooted there would see it, without ever leaving the root.

Every component is lstat'ed under the root; an absolute symlink restarts at the root, a
relative one continues from its directory. What `..` at the root does is the mode:

- CLAMP (chroot semantics, as runc's and umoci's securejoin): it stays at the root. The
  runtime's mount targets (runtime/linux/pathsafe.py) and the builder's context paths
  (imagetool/builder/buildcontext.py) use it.
- REFUSE: it raises Escape. Layer extraction and the builder's rootfs paths
  (imagetool/layer/resolve.py) use it: a link leading out is an error, not reinterpreted.

The callers' other differences are options (ARCHITECTURE.md, "In-root paths"): the symlink
limit, whether the last component is followed, whether components must be directories
(`strict`), what a missing component does (`on_missing`; by default it is kept as a name,
so callers creating it report), and which lstat errors count as "not there" (`tolerate`).
Results are paths relative to the root ('' is the root itself). Only os and stat are
imported: pyrunc's create path imports this module.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # collections.abc/typing cost ~3 ms on pyrunc's create path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    # (parent relative path, missing name, whether it ends the path): may create it or raise
    OnMissing = Callable[[str, str, bool], None]

CLAMP = "clamp"
REFUSE = "refuse"


class InRootError(Exception):
    """A path that can't be resolved inside the root. `rel`: where it stopped; `link` and
    `target`: the symlink being followed ('' and None outside one); `at_end`: whether that
    symlink (or the component) ends the path."""

    def __init__(self, msg: str, rel: str = "", link: str = "", target: str | None = None,
                 at_end: bool = False) -> None:
        super().__init__(msg)
        self.rel, self.link, self.target, self.at_end = rel, link, target, at_end


class Escape(InRootError):
    """REFUSE mode: a `..` would climb above the root."""


class TooManyLinks(InRootError):
    """More symlinks followed than max_links (a loop, usually)."""


class NotADirectory(InRootError):
    """strict: a component that must be a directory is something else."""


class InRoot:
    """Resolves paths under `root` (used as given: callers choose abspath or realpath).
    `links` counts the symlinks followed since the last walk() (step() does not reset it)."""

    __slots__ = ("root", "clamp", "max_links", "strict", "on_missing", "tolerate", "links",
                 "_prefix")

    def __init__(self, root: str, *, mode: str = CLAMP, max_links: int = 255,
                 strict: bool = False, on_missing: OnMissing | None = None,
                 tolerate: tuple[type[Exception], ...] = ()) -> None:
        if mode not in (CLAMP, REFUSE):
            raise ValueError(f"mode: {mode!r} is neither {CLAMP!r} nor {REFUSE!r}")
        self.root = root
        self.clamp = mode == CLAMP
        self.max_links = max_links
        self.strict = strict
        self.on_missing = on_missing
        self.tolerate = tolerate  # lstat errors besides ENOENT/ENOTDIR that mean "not there"
        self.links = 0
        self._prefix = root if root.endswith("/") or not root else root + "/"

    def host(self, rel: str) -> str:
        """The host path of a resolved relative path."""
        return self._prefix + rel if rel else self.root

    def walk(self, parts: Iterable[str], *, start: str = "", follow_last: bool = True,
             dir_last: bool = False) -> str:
        """Resolve the components `parts` ('' and '.' are skipped) from the resolved
        directory `start`; see step() for follow_last (its `follow`) and dir_last."""
        self.links = 0
        names = [p for p in parts if p and p != "."]
        rel = start
        end = len(names) - 1
        for i, name in enumerate(names):
            rel = self.step(rel, name, last=i == end, follow=follow_last or i != end,
                            dir_last=dir_last)
        return rel

    def step(self, rel: str, name: str, *, last: bool = True, follow: bool = True,
             dir_last: bool = False) -> str:
        """Resolve one component `name` under the resolved directory `rel`, following
        symlinks (with their targets' components) inside the root. `last`: `name` ends the
        path; then `follow=False` takes it as it is, not even lstat'ed, and under `strict`
        it must be a directory only if `dir_last`. Every other component must be one
        under `strict` (NotADirectory)."""
        if name != ".." and (follow or not last):  # fast path: a directory (or a plain name)
            nxt = f"{rel}/{name}" if rel else name
            try:
                mode = os.lstat(self._prefix + nxt).st_mode
            except (OSError, ValueError):
                pass  # the general path below says what it means
            else:
                if stat.S_ISDIR(mode) or not (stat.S_ISLNK(mode) or self.strict
                                              and (dir_last or not last)):
                    return nxt
        cur = rel
        # frames: [components, next index, whether they end the path, link, its target]
        stack: list[list[Any]] = [[(name,), 0, last, "", None]]
        while stack:
            frame = stack[-1]
            comps, i = frame[0], frame[1]
            if i == len(comps):
                stack.pop()
                continue
            frame[1] = i + 1
            comp = comps[i]
            at_end = frame[2] and i + 1 == len(comps)
            if comp == "..":
                if cur:
                    cur = cur.rpartition("/")[0]
                elif not self.clamp:
                    raise Escape(f"{frame[3] or name}: '..' leads outside the root", cur,
                                 frame[3], frame[4], frame[2])
                continue
            nxt = f"{cur}/{comp}" if cur else comp
            if at_end and not follow:
                cur = nxt
                continue
            st = self._lstat(cur, nxt)
            if st is None:
                if self.on_missing is not None:
                    self.on_missing(cur, comp, at_end)
                cur = nxt
                continue
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                self.links += 1
                if self.links > self.max_links:
                    raise TooManyLinks(f"/{nxt}: too many levels of symbolic links", nxt, nxt,
                                       None, at_end)
                target = os.readlink(self._prefix + nxt)
                if target.startswith("/"):
                    cur = ""
                stack.append([[c for c in target.split("/") if c and c != "."], 0, at_end,
                              nxt, target])
                continue
            if self.strict and (dir_last or not at_end) and not stat.S_ISDIR(mode):
                raise NotADirectory(f"/{nxt} is not a directory", nxt, frame[3], frame[4],
                                    at_end)
            cur = nxt
        return cur

    def _lstat(self, cur: str, nxt: str) -> os.stat_result | None:
        """lstat of `nxt`, or None if it is not there (missing, under a non-directory outside
        strict, or a tolerated error)."""
        try:
            return os.lstat(self._prefix + nxt)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            if self.strict:
                raise NotADirectory(f"/{cur} is not a directory", cur) from None
            return None
        except self.tolerate:
            return None
