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

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from imagetool import digest as _digest

from . import dockerfile as df
from .buildcontext import (  # noqa: F401  (re-exported: the context half's old home)
    SourceError,
    check_sources,
    context_records,
    entry_record,
    file_digest,
    has_wildcards,
    resolve_in_root,
)
from .dockerignore import DockerIgnore, PatternError
from .parents import entries
from .plan import PROXY_ARGS

KEY_VERSION = 1


def digest_of(document: Any) -> str:
    """sha256 of the canonical JSON form of `document` (sorted keys, no spaces, UTF-8)."""
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _digest.of_bytes(data.encode("utf-8"))


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
    local: list[str] = []
    remote: list[str] = []
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
    root = os.path.abspath(os.fspath(context_dir))
    return [entry_record(rel, full, st, with_mtime, memo)
            for rel, full, st in entries(root, sources, ignore or DockerIgnore(), exclude)]

