"""Cache keys for build steps: deterministic digests of what a step's result depends on.

A step's key is the sha256 of a canonical JSON document holding:

- the parent's key (the previous step of the stage; for the first, the base's key),
- the instruction in normalised form: its arguments after variable substitution, without line
  numbers, spelling or comments (so moving a line or editing a comment doesn't miss the cache),
- for RUN, the ARG values in scope (they are the command's environment; the proxy args are
  left out, as Docker leaves them out),
- for COPY/ADD from the context, the content hash of the sources: every file and directory
  the instruction would copy (after wildcards and .dockerignore), with its relative path, type,
  permission bits, symlink target and the sha256 of its bytes; not owners (COPY resets them)
  and not mtimes (unless asked for),
- for COPY --from and RUN --mount from=, the key or digest of that stage or image,
- the platform, and anything else the caller adds (e.g. the digest an ADD URL downloaded to).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from . import dockerfile as df
from .dockerignore import DockerIgnore, PatternError, go_clean, go_match, has_wildcards
from .plan import PROXY_ARGS

KEY_VERSION = 1
_CHUNK = 1 << 20


class SourceError(ValueError):
    """A COPY/ADD source that isn't in the build context (missing or .dockerignore'd)."""


def digest_of(document: Any) -> str:
    """sha256 of the canonical JSON form of `document` (sorted keys, no spaces, UTF-8)."""
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def base_key(image: str, *, digest: str | None = None, platform: str | None = None) -> str:
    """The key a stage starts from: its base image (by manifest digest when known) or
    `scratch`. A stage built on another stage starts from that stage's last key instead."""
    return digest_of({"v": KEY_VERSION, "base": digest or image, "platform": platform})


def step_key(parent: str | None, instruction: df.Instruction | Mapping[str, Any], *,
             args: Mapping[str, str] | None = None, sources: str | None = None,
             from_keys: Iterable[str] = (), platform: str | None = None,
             extra: Mapping[str, Any] | None = None) -> str:
    """The cache key of one step. `instruction` should be the expanded instruction."""
    if isinstance(instruction, df.Instruction):
        semantic = instruction.semantic()
    else:
        semantic = {k: v for k, v in instruction.items()
                    if k not in ("line", "end_line", "original", "flags")}
    doc = {
        "v": KEY_VERSION,
        "parent": parent or "",
        "instruction": semantic,
        "args": {k: v for k, v in sorted((args or {}).items()) if k not in PROXY_ARGS},
        "sources": sources,
        "from": list(from_keys),
        "platform": platform,
        "extra": dict(extra or {}),
    }
    return digest_of(doc)


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def resolve_in_root(root: str, rel: str, *, follow_last: bool = True) -> str:
    """`rel` inside `root` with symlinks resolved as if `root` were `/` (a link can't lead
    out of the context). Returns the resolved path relative to root ('' for the root)."""
    parts = [p for p in go_clean("/" + rel).split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        candidate = done + [part]
        full = os.path.join(root, *candidate)
        if (parts or follow_last) and os.path.islink(full):
            hops += 1
            if hops > 255:
                raise SourceError(f"{rel}: too many levels of symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        if part == ".":
            continue
        done.append(part)
    return "/".join(done)


def _entry_record(rel: str, full: str, st: os.stat_result, with_mtime: bool,
                  memo: dict[tuple[Any, ...], str] | None) -> list[Any]:
    mode = stat.S_IMODE(st.st_mode)
    rec: list[Any]
    if stat.S_ISDIR(st.st_mode):
        rec = [rel, "d", mode]
    elif stat.S_ISLNK(st.st_mode):
        rec = [rel, "l", mode, os.readlink(full)]
    elif stat.S_ISREG(st.st_mode):
        key = (full, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = memo.get(key) if memo is not None else None
        if digest is None:
            digest = file_digest(full)
            if memo is not None:
                memo[key] = digest
        rec = [rel, "f", mode, st.st_size, digest]
    else:
        kind = "p" if stat.S_ISFIFO(st.st_mode) else "o"
        rec = [rel, kind, mode, getattr(st, "st_rdev", 0)]
    if with_mtime:
        rec.append(st.st_mtime_ns)
    return rec


def _glob(root: str, pattern: str, ignore: DockerIgnore) -> list[str]:
    """Context-relative paths matching a wildcard source, component by component."""
    parts = [p for p in pattern.split("/") if p]
    found = [""]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: list[str] = []
        for base in found:
            directory = os.path.join(root, base) if base else root
            if not has_wildcards(part):
                rel = f"{base}/{part}" if base else part
                if os.path.lexists(os.path.join(root, rel)):
                    nxt.append(rel)
                continue
            try:
                names = sorted(os.listdir(directory))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for name in names:
                rel = f"{base}/{name}" if base else name
                if go_match(part, name) and (last or os.path.isdir(os.path.join(root, rel))):
                    nxt.append(rel)
        found = nxt
    return [f for f in found if not ignore.excluded(f)]


def context_records(context_dir: str | os.PathLike[str], sources: Iterable[str], *,
                    ignore: DockerIgnore | None = None, with_mtime: bool = False,
                    memo: dict[tuple[Any, ...], str] | None = None,
                    exclude: DockerIgnore | None = None) -> list[list[Any]]:
    """What COPY would read for `sources` (expanded, context-relative): one record per entry.

    A source names a file or directory (a directory's contents are copied, recursively) or is
    a wildcard pattern (Go filepath.Match per path component; matching nothing is allowed, as
    BuildKit allows it). A source that is missing, or hidden by .dockerignore, is a SourceError.
    Leading `/` and `..` can't leave the context. The source itself is followed if it is a
    symlink; links inside are recorded as links. `exclude` (COPY --exclude) leaves out the
    wildcard matches it names and, inside a directory source, the paths relative to it.
    """
    root = os.path.abspath(os.fspath(context_dir))
    ignore = ignore if ignore is not None else DockerIgnore()
    records: list[list[Any]] = []
    for top, real, full, st in _roots(root, sources, ignore, exclude):
        records.append(_entry_record(top, full, st, with_mtime, memo))
        if not stat.S_ISDIR(st.st_mode):
            continue
        for child, entry in ignore.walk(root, real):
            suffix = child[len(real):].lstrip("/") if real else child
            if exclude and exclude.excluded(suffix):
                continue
            name = f"{top}/{suffix}" if top else suffix
            records.append(_entry_record(name, entry.path, entry.stat(follow_symlinks=False),
                                         with_mtime, memo))
    return records


def _roots(root: str, sources: Iterable[str], ignore: DockerIgnore,
           exclude: DockerIgnore | None = None
           ) -> Iterable[tuple[str, str, str, os.stat_result]]:
    """(context path, resolved path, absolute path, lstat) of each source or wildcard match
    (matches that `exclude`, COPY --exclude, names are left out)."""
    for src in sources:
        rel = go_clean("/" + src.replace(os.sep, "/")).lstrip("/")
        if has_wildcards(rel):
            roots = [(m, f"{src} -> {m}") for m in _glob(root, rel, ignore)
                     if not (exclude and exclude.excluded(m))]
        else:
            roots = [(rel, src)]
        for top, label in roots:
            if top and ignore.excluded(top) and not (
                    ignore.has_exceptions and ignore.must_descend(top)):
                raise SourceError(f"{label}: excluded by .dockerignore, so not in the build "
                                  "context")
            real = resolve_in_root(root, top)
            full = os.path.join(root, real) if real else root
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                raise SourceError(f"{label}: not found in the build context") from None
            yield top, real, full, st


def check_sources(context_dir: str | os.PathLike[str], sources: Iterable[str], *,
                  ignore: DockerIgnore | None = None) -> None:
    """Raise SourceError if a source is missing or .dockerignore'd (reads no file contents)."""
    root = os.path.abspath(os.fspath(context_dir))
    for _ in _roots(root, sources, ignore if ignore is not None else DockerIgnore()):
        pass


def context_digest(context_dir: str | os.PathLike[str], sources: Iterable[str], *,
                   ignore: DockerIgnore | None = None, with_mtime: bool = False,
                   memo: dict[tuple[Any, ...], str] | None = None) -> str:
    """The content hash of `sources` in the context (see context_records)."""
    recs = context_records(context_dir, sources, ignore=ignore, with_mtime=with_mtime,
                           memo=memo)
    return digest_of({"v": KEY_VERSION, "entries": recs})


def sources_digest(instruction: df.Copy | df.Add, context_dir: str | os.PathLike[str] | None,
                   *, ignore: DockerIgnore | None = None, with_mtime: bool = False,
                   filename: str = df.DEFAULT_FILENAME,
                   memo: dict[tuple[Any, ...], str] | None = None) -> str | None:
    """The `sources` input of step_key for an expanded COPY/ADD.

    Context files are hashed; URLs and git sources are named (the caller adds what it
    downloaded through `extra`); heredoc bodies are part of the instruction already; COPY
    --from reads another stage or image, whose key the caller passes as `from_keys`. A source
    that is missing is a DockerfileError naming the instruction's line.
    """
    if isinstance(instruction, df.Copy) and instruction.from_stage:
        return None
    local, remote = [], []
    for s in instruction.sources:
        (remote if isinstance(instruction, df.Add) and (df.is_url(s) or df.is_git_url(s))
         else local).append(s)
    doc: dict[str, Any] = {"v": KEY_VERSION, "remote": remote}
    if local:
        if context_dir is None:
            raise df.DockerfileError(f"{instruction.NAME}: no build context to copy "
                                     f"{', '.join(local)} from", filename, instruction.line)
        try:
            if isinstance(instruction, df.Copy) and instruction.parents:
                doc["parents"] = _parents_records(context_dir, local, ignore, with_mtime,
                                                  memo, DockerIgnore(instruction.exclude))
            else:
                doc["entries"] = context_records(context_dir, local, ignore=ignore,
                                                 with_mtime=with_mtime, memo=memo,
                                                 exclude=DockerIgnore(instruction.exclude))
        except (SourceError, PatternError) as e:
            raise df.DockerfileError(f"{instruction.NAME} failed: {e}", filename,
                                     instruction.line) from None
    return digest_of(doc)


def _parents_records(context_dir: str | os.PathLike[str], sources: list[str],
                     ignore: DockerIgnore | None, with_mtime: bool,
                     memo: dict[tuple[Any, ...], str] | None,
                     exclude: DockerIgnore) -> list[list[Any]]:
    """COPY --parents: a record per entry it writes, named by its path below the
    destination, parent directories included (their modes are copied too)."""
    from .parents import entries
    root = os.path.abspath(os.fspath(context_dir))
    return [_entry_record(rel, full, st, with_mtime, memo)
            for rel, full, st in entries(root, sources, ignore or DockerIgnore(), exclude)]
