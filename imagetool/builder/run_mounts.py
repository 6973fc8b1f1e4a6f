"""RUN --mount on the host: each mount made ready before the container starts, and undone after.

As BuildKit does it:

- bind: the build context (read-only unless rw; with rw the writes go to a throw-away copy or
  overlay, never back), or `from=` a stage or image (an overlay of its layers). What a bind
  from the context sees is what COPY sees: .dockerignore'd files are left out. Its content is
  part of the RUN's cache key; a `from=` stage takes part through that stage's key.
- cache: a directory under <store root>/build-cache-mounts/<sha256 of id>/ that outlives the
  build; not in the layer, not in the key. sharing=locked holds a flock for the RUN;
  private takes the first instance no other RUN holds; shared takes no lock.
- tmpfs: a fresh tmpfs (size= honoured).
- secret: from `--secret id=...` (BuildOptions.secrets), written to a private tmpfs on the host
  and bound read-only (mode 0400 unless mode=) at /run/secrets/<id> or target=; `env=` puts it
  in the environment instead of or as well as a file. A missing secret is skipped, unless
  required. The content is never in the layer, the history or the cache key.

Targets are relative to the working directory, as in BuildKit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imagetool import snapshots
from imagetool.errors import ImagetoolError
from imagetool.units import parse_bytes

from . import buildcontext, cachekey
from . import dockerfile as df
from .dockerignore import DockerIgnore
from .plan import Source

CACHE_MOUNTS = "build-cache-mounts"
SECRETS_TMPFS_SIZE = 16 << 20


class MountError(ImagetoolError, ValueError):
    """A mount that can't be made; the caller names the Dockerfile line."""


# -- secrets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Secret:
    """Where a build secret's bytes come from: a file, or an environment variable."""

    id: str
    src: str | None = None
    env: str | None = None

    def read(self) -> bytes:
        if self.src is not None:
            with open(self.src, "rb") as f:
                return f.read()
        value = os.environ.get(self.env or self.id)
        if value is None:
            raise MountError(f"secret {self.id}: environment variable {self.env or self.id} "
                             "is not set")
        return value.encode()


def parse_secret(text: str) -> Secret:
    """`id=NAME[,src=PATH|,env=VAR][,type=file|env]`, as `docker buildx build --secret`.
    Without src= or env=, the variable NAME if it is set, else the file NAME."""
    kind = sid = src = env = None
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise ValueError(f"--secret {text!r}: {item!r} is not key=value")
        if key == "type":
            if value not in ("file", "env"):
                raise ValueError(f"--secret {text!r}: unsupported type {value!r} "
                                 "(want file or env)")
            kind = value
        elif key == "id":
            sid = value
        elif key in ("src", "source"):
            src = value
        elif key == "env":
            env = value
        else:
            raise ValueError(f"--secret {text!r}: unexpected key {key!r} "
                             "(want id, src, env or type)")
    if not sid:
        raise ValueError(f"--secret {text!r}: missing id=")
    if kind == "env" and env is None:
        env, src = src, None
    if src is None and env is None:
        if kind != "file" and sid in os.environ:
            env = sid
        else:
            src = sid
    if src is not None and env is not None:
        raise ValueError(f"--secret {text!r}: give src= or env=, not both")
    if src is not None:
        if not os.path.isfile(src) or not os.access(src, os.R_OK):
            raise ValueError(f"--secret {text!r}: {src} is not a readable file")
        src = os.path.abspath(src)
    elif env not in os.environ:
        raise ValueError(f"--secret {text!r}: environment variable {env} is not set")
    return Secret(id=sid, src=src, env=env)


# -- before anything runs ----------------------------------------------------------------------
def check(ins: df.Run, *, context: str, ignore: DockerIgnore,
          secrets: dict[str, Secret]) -> str | None:
    """What is wrong with a RUN's --network and --mount options, checked before the build
    runs anything (None: nothing)."""
    if ins.network not in (None, "default", "none", "host"):
        return f"--network={ins.network}: unsupported (want default, none or host)"
    for m in ins.mounts:
        if m.type == "ssh":
            return "--mount=type=ssh is not supported yet"
        if m.target is not None and _clean(m.target) == "/":
            return f"--mount={m.spec}: invalid mount target {m.target!r}"
        if m.type == "secret" and m.required and m.id not in secrets:
            return (f"--mount=type=secret: secret {m.id!r} is required but was not given "
                    f"(pass --secret id={m.id},src=FILE)")
        if m.type == "bind" and not m.from_stage:
            try:
                buildcontext.check_sources(context, [m.source or "."], ignore=ignore)
            except buildcontext.SourceError as e:
                return f"--mount={m.spec}: {e}"
    return None


def context_digest(ins: df.Run, context: str, ignore: DockerIgnore,
                   filename: str = df.DEFAULT_FILENAME) -> str | None:
    """The content of the context files a RUN bind-mounts (the `sources` of its cache key);
    None when it mounts none."""
    entries = []
    for m in ins.mounts:
        if m.type != "bind" or m.from_stage:
            continue
        try:
            recs = buildcontext.context_records(context, [m.source or "."], ignore=ignore)
        except buildcontext.SourceError as e:
            raise df.DockerfileError(f"RUN --mount={m.spec}: {e}", filename, ins.line) from None
        entries.append([m.source or ".", recs])
    if not entries:
        return None
    return cachekey.digest_of({"v": cachekey.KEY_VERSION, "binds": entries})


# -- at run time -------------------------------------------------------------------------------
@dataclass
class Prepared:
    mounts: list[dict[str, Any]] = field(default_factory=list)   # runtime spec mounts
    env: dict[str, str] = field(default_factory=dict)             # secrets as variables


@dataclass
class Context:
    """What preparing a RUN's mounts needs from the builder."""

    workdir: str
    tmp: str                                   # private scratch, removed by the builder
    store_root: str
    context: str
    ignore: DockerIgnore
    secrets: dict[str, Secret]
    sources: list[Source]                      # the from= sources, in mount order
    from_root: Callable[[Source], str]         # mounts a stage/image; unmounted by the stack


def prepare(stack: contextlib.ExitStack, ins: df.Run, ctx: Context) -> Prepared:
    """Make every mount of `ins` ready; everything made is undone when `stack` closes."""
    out = Prepared()
    froms = iter(ctx.sources)
    made = []
    for m in ins.mounts:
        src = next(froms, None) if m.from_stage else None
        target = _target(m, ctx.workdir)
        if m.type == "secret":
            entry = _secret(stack, m, ctx, target, out)
        elif m.type == "tmpfs":
            opts = ["nosuid", "nodev"]
            if m.size:
                opts.append(f"size={parse_bytes(m.size)}")
            entry = {"type": "tmpfs", "source": "tmpfs", "options": opts}
        elif m.type == "cache":
            entry = _bind(_cache(stack, m, ctx, src), m.readonly)
        else:
            entry = _bind(_bind_source(stack, m, ctx, src), m.readonly)
        if entry is not None and target is not None:
            made.append({"destination": target, **entry})
    # parents before children, so a mount inside another one lands on top of it
    made.sort(key=lambda e: len([x for x in e["destination"].split("/") if x]))
    out.mounts = made
    return out


def _clean(path: str) -> str:
    return os.path.normpath("/" + path.lstrip("/"))


def _target(m: df.Mount, workdir: str) -> str | None:
    if m.target is None:
        return None
    target = m.target if m.target.startswith("/") else os.path.join(workdir, m.target)
    target = _clean(target)
    if target == "/":
        raise MountError(f"invalid mount target {m.target!r}")
    return target


def _bind(path: str, readonly: bool) -> dict[str, Any]:
    return {"type": "bind", "source": path,
            "options": ["rbind", "ro" if readonly else "rw", "nosuid", "nodev"]}


def _scratch(ctx: Context, prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=ctx.tmp)


def _in_root(root: str, rel: str | None) -> str:
    real = buildcontext.resolve_in_root(root, rel or "")
    return os.path.join(root, real) if real else root


def _overlay(stack: contextlib.ExitStack, ctx: Context, lower: str) -> str:
    """A writable view of directory `lower` whose writes are thrown away."""
    d = _scratch(ctx, "rw-")
    upper, work, merged = (os.path.join(d, x) for x in ("upper", "work", "merged"))
    for x in (upper, work, merged):
        os.mkdir(x, 0o755)
    try:
        snapshots.mount_overlay([lower], upper, work, merged)
    except snapshots.SnapshotError:
        shutil.rmtree(merged)
        shutil.copytree(lower, merged, symlinks=True)
        return merged
    stack.callback(snapshots.unmount, merged)
    return merged


def _bind_source(stack: contextlib.ExitStack, m: df.Mount, ctx: Context,
                 src: Source | None) -> str:
    if src is not None:       # a stage or image: its own overlay, whose writes are dropped
        root = ctx.from_root(src)
        path = _in_root(root, m.source)
        if not os.path.lexists(path):
            raise MountError(f"--mount={m.spec}: {m.source} not found in {src.via} "
                             f"source {src.ref}")
        return path
    rel = buildcontext.resolve_in_root(ctx.context, m.source or "")
    path = os.path.join(ctx.context, rel) if rel else ctx.context
    if ctx.ignore and os.path.isdir(path):
        staged = _scratch(ctx, "ctx-")   # what COPY would see: no .dockerignore'd files
        for child, entry in ctx.ignore.walk(ctx.context, rel):
            assert entry is not None
            dest = os.path.join(staged, child[len(rel):].lstrip("/") if rel else child)
            if entry.is_dir(follow_symlinks=False):
                os.makedirs(dest, exist_ok=True)
                shutil.copystat(entry.path, dest)
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), dest)
                else:
                    shutil.copy2(entry.path, dest)
        shutil.copystat(path, staged)
        return staged
    if m.readonly:
        return path
    if os.path.isdir(path):
        return _overlay(stack, ctx, path)
    copy = os.path.join(_scratch(ctx, "rwf-"), os.path.basename(path) or "file")
    shutil.copy2(path, copy)
    return copy


def _cache(stack: contextlib.ExitStack, m: df.Mount, ctx: Context, src: Source | None) -> str:
    cache_id = m.id or _clean(m.target or "")
    base = os.path.join(ctx.store_root, CACHE_MOUNTS,
                        hashlib.sha256(cache_id.encode()).hexdigest())
    os.makedirs(base, mode=0o700, exist_ok=True)
    with open(os.path.join(base, "id"), "w") as f:
        f.write(cache_id + "\n")
    n = 0
    while True:
        suffix = f"-{n}" if n else ""
        fd = os.open(os.path.join(base, "lock" + suffix), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        stack.callback(os.close, fd)
        if m.sharing == "locked":
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif m.sharing == "private":
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                n += 1
                continue
        break
    data = os.path.join(base, "data" + suffix)
    if not os.path.isdir(data):
        _new_cache_dir(stack, m, ctx, src, data)
    if m.source and src is None:
        return os.path.join(data, buildcontext.resolve_in_root(data, m.source))
    return data


def _new_cache_dir(stack: contextlib.ExitStack, m: df.Mount, ctx: Context,
                   src: Source | None, data: str) -> None:
    """A new cache directory: mode= (0755), uid=/gid= (0), seeded from `from=` if given."""
    tmp = tempfile.mkdtemp(prefix=".new-", dir=os.path.dirname(data))
    try:
        if src is not None:
            seed = _in_root(ctx.from_root(src), m.source)
            if os.path.isdir(seed):
                shutil.copytree(seed, tmp, symlinks=True, dirs_exist_ok=True)
        mode = m.mode_int()
        os.chmod(tmp, mode if mode is not None else 0o755)
        os.chown(tmp, int(m.uid or 0), int(m.gid or 0))
        os.rename(tmp, data)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(data):
            raise


def _secret(stack: contextlib.ExitStack, m: df.Mount, ctx: Context, target: str | None,
            out: Prepared) -> dict[str, Any] | None:
    assert m.id is not None
    secret = ctx.secrets.get(m.id)
    if secret is None:
        if m.required:
            raise MountError(f"secret {m.id!r} is required but was not given")
        return None
    data = secret.read()
    if m.env:
        out.env[m.env] = data.decode("utf-8", "surrogateescape")
    if target is None:
        return None
    path = os.path.join(_secrets_dir(stack, ctx), hashlib.sha256(target.encode()).hexdigest())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, int(m.uid or 0), int(m.gid or 0))
        mode = m.mode_int()
        os.fchmod(fd, mode if mode is not None else 0o400)
    finally:
        os.close(fd)
    return {"type": "bind", "source": path,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}


def _secrets_dir(stack: contextlib.ExitStack, ctx: Context) -> str:
    """A tmpfs of our own for this RUN's secret files: they never touch a disk."""
    path = os.path.join(ctx.tmp, "secrets")
    if os.path.ismount(path):
        return path
    from runtime.linux import syscalls as sc
    os.mkdir(path, 0o700)
    sc.mount("tmpfs", path, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
             f"mode=0700,size={SECRETS_TMPFS_SIZE}")
    stack.callback(shutil.rmtree, path, True)
    stack.callback(snapshots.unmount, path)
    return path


# -- after the container -----------------------------------------------------------------------
def upper_of(merged: str) -> str | None:
    """The upperdir of the overlay mounted on `merged` (from /proc/self/mountinfo)."""
    real = os.path.realpath(merged)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if snapshots._unescape(fields[4]) != real:
                continue
            sep = fields.index("-")
            for opt in fields[sep + 3].split(","):
                if opt.startswith("upperdir="):
                    return snapshots._unescape(opt[len("upperdir="):])
    return None


def parent_dirs(root: str, stubs: list[str]) -> dict[str, tuple[int, int, int]]:
    """(mode, uid, gid) of the existing parents of each stub, relative to root."""
    out: dict[str, tuple[int, int, int]] = {}
    for stub in stubs:
        rel = os.path.relpath(os.path.dirname(stub), root)
        while rel not in (".", ""):
            st = os.lstat(os.path.join(root, rel))
            out[rel] = (st.st_mode, st.st_uid, st.st_gid)
            rel = os.path.dirname(rel)
    return out


def prune_copied_up(upper: str, parents: dict[str, tuple[int, int, int]],
                    before: set[str]) -> None:
    """Drop parent directories that overlayfs only copied up to hold a mount stub: empty,
    not opaque, unchanged, and not in the upper dir before the RUN."""
    for rel in sorted(parents, key=lambda r: -r.count("/")):
        if rel in before:
            continue
        path = os.path.join(upper, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (not stat.S_ISDIR(st.st_mode) or os.listdir(path)
                or (st.st_mode, st.st_uid, st.st_gid) != parents[rel] or _opaque(path)):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def upper_entries(upper: str | None) -> set[str]:
    if upper is None:
        return set()
    out = set()
    for dirpath, dirs, files in os.walk(upper):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), upper))
    return out
