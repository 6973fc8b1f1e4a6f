"""Apply layer tarballs to a directory: our own member loop (umoci's oci/layer tar_extract in
shape), never tarfile's extractall.

Two targets:
  copy     a full rootfs: layers applied in order onto one tree; `.wh.X` removes X and
           `.wh..wh..opq` empties its directory of what lower layers put there (what this
           layer adds stays), like `umoci unpack` and docker's applyLayer.
  overlay  one layer into an empty directory that becomes an overlayfs lower layer: `.wh.X`
           becomes a 0/0 character device X and `.wh..wh..opq` the trusted.overlay.opaque
           xattr (the kernel's own whiteout format).

Safety. Every name is checked before anything is written: absolute names and `..` components
are refused. Parents are resolved one component at a time with lstat, inside the root, the way
a chrooted process would see them: an absolute symlink restarts at the root, a relative one
continues from its directory, and a `..` that would climb above the root is refused (a peer
that clamps it, like a chroot, would keep the write inside; we refuse a layer that tries).
The last component is never followed: an existing symlink there is replaced, not written
through. Hardlinks resolve their target the same way and must name an existing non-directory
inside the root. We are the only writer of the tree while a layer is applied (a fresh
snapshot directory or a bundle we just made), so an lstat walk is race-free here. Callers
apply into a directory they remove on any error, so a refused layer leaves nothing behind.

Metadata: owner (numeric uid/gid, only when running as root), mode including setuid/setgid/
sticky (set after chown, which clears them), xattrs (PAX SCHILY.xattr.* and LIBARCHIVE.xattr.*;
trusted.overlay.* from a layer is dropped: it would steer overlayfs; ENOTSUP is ignored),
mtimes with nanoseconds (directories after their contents, at the end of the layer; parents
whose entries a whiteout removed get their old times back). Hardlinks share their target's
metadata and do not change it.

Speed: the blob is read, digest-checked, decompressed (isal gzip, zstd, or none) and diff_id
hashed by a producer thread (these release the GIL), while the main thread parses headers and
writes files; file data goes from the decompressor's chunk to os.write without a copy.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import queue
import shutil
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from imagetool import compression

BLOCK = 512
CHUNK = 1 << 20
ZERO_BLOCK = bytes(BLOCK)
MAX_EXTENDED = 16 << 20  # bytes of one PAX or GNU long-name header we are willing to hold
MAX_LINKS = 40  # symlinks followed while resolving one path, as the kernel allows
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
WHITEOUT_META = ".wh..wh."  # aufs' own bookkeeping (.wh..wh.plnk, ...): skipped
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
DROPPED_XATTR_PREFIX = "trusted.overlay."

# tar type flags
REG, AREG, CONT = b"0", b"\0", b"7"
LNK, SYM, CHR, BLK, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
SPARSE = b"S"
_REGULAR = (REG, AREG, CONT)
_KNOWN = frozenset({*_REGULAR, LNK, SYM, CHR, BLK, DIR, FIFO})
_NAMES = {SPARSE: "GNU sparse file", b"V": "volume label", b"M": "multi-volume continuation",
          b"N": "GNU old long name", b"D": "GNU dump directory"}


class LayerError(Exception):
    """A layer we cannot apply: not a tar, truncated, unsupported entry, failed digest."""


class UnsafeLayer(LayerError):
    """An entry that would land outside the rootfs (or write through a symlink out of it)."""


@dataclass
class Stats:
    entries: int = 0
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    whiteouts: int = 0
    # directories made because an entry's parent was missing from the layer (relative paths);
    # overlay snapshots copy their metadata from the lower layers afterwards
    implicit_dirs: list[str] = field(default_factory=list)


# -- the byte stream ---------------------------------------------------------------------------
class _Producer(threading.Thread):
    """Reads `raw`, decompresses and hashes it, and hands 1 MiB chunks to the consumer."""

    def __init__(self, raw: BinaryIO, label: str, diff_id: str | None) -> None:
        super().__init__(name=f"layer-reader {label}", daemon=True)
        self.raw = raw
        self.label = label
        self.diff_id = diff_id
        self.q: queue.Queue[Any] = queue.Queue(maxsize=16)
        self.stop = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            kind, plain = compression.open_any(self.raw)
            h = hashlib.sha256() if self.diff_id else None
            while True:
                chunk = plain.read(CHUNK)
                if not chunk:
                    break
                if h is not None:
                    h.update(chunk)
                if not self._put(chunk):
                    return
            verify_rest = getattr(self.raw, "verify_rest", None)
            if verify_rest is not None:  # a store blob: the digest check runs at its EOF
                verify_rest()
            if h is not None and self.diff_id and f"sha256:{h.hexdigest()}" != self.diff_id:
                raise LayerError(f"{self.label}: uncompressed content hashes to "
                                 f"sha256:{h.hexdigest()}, not its diff_id {self.diff_id}")
            self._put(None)
        except BaseException as e:  # handed to the consumer, raised there
            if isinstance(e, (OSError, EOFError, ValueError)) and \
                    not isinstance(e, LayerError):
                e = LayerError(f"{self.label}: cannot read the layer ({e})")
            self._put(e)


class _Stream:
    """The uncompressed tar as exact-length reads, copies to fds and skips."""

    def __init__(self, producer: _Producer, label: str) -> None:
        self._p = producer
        self._label = label
        self._buf = b""
        self._pos = 0
        self.eof = False

    def _next(self) -> bool:
        if self.eof:
            return False
        item = self._p.q.get()
        if item is None:
            self.eof = True
            return False
        if isinstance(item, BaseException):
            self.eof = True
            raise item
        self._buf, self._pos = item, 0
        return True

    def read(self, n: int) -> bytes:
        pos, buf = self._pos, self._buf
        if len(buf) - pos >= n:
            self._pos = pos + n
            return buf[pos:pos + n]
        parts = [buf[pos:]]
        need = n - (len(buf) - pos)
        self._pos = len(buf)
        while need and self._next():
            take = min(need, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            need -= take
        return b"".join(parts)

    def _truncated(self) -> LayerError:
        return LayerError(f"{self._label}: the tar archive is truncated")

    def copy(self, fd: int, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._next():
                    raise self._truncated()
                continue
            take = n if n < avail else avail
            view = memoryview(self._buf)[self._pos:self._pos + take]
            while view:
                view = view[os.write(fd, view):]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._next():
                    raise self._truncated()
                continue
            take = n if n < avail else avail
            self._pos += take
            n -= take

    def drain(self) -> None:
        """Consume the rest (end-of-archive padding) so the digest checks run and report."""
        while self._next():
            pass


@contextlib.contextmanager
def _pipeline(raw: BinaryIO, label: str, diff_id: str | None) -> Iterator[_Stream]:
    p = _Producer(raw, label, diff_id)
    p.start()
    s = _Stream(p, label)
    try:
        yield s
        s.drain()
    finally:
        p.stop.set()
        while p.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                p.q.get(timeout=0.05)
        p.join()


# -- tar headers -------------------------------------------------------------------------------
@dataclass
class Entry:
    name: str
    kind: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes]


def _ns(text: bytes, what: str) -> int:
    """A PAX time ("1700000000.123456789", maybe negative) in nanoseconds."""
    s = text.decode("ascii", "replace").strip()
    neg = s.startswith("-")
    whole, _, frac = s.lstrip("-+").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise LayerError(f"PAX {what} {s!r} is not a number")
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _pax_records(data: bytes, label: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding some writers leave after the last record
            break
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp])
        except ValueError:
            length = 0
        if sp < 0 or length <= sp - pos or pos + length > len(data) or \
                data[pos + length - 1:pos + length] != b"\n":
            raise LayerError(f"{label}: malformed PAX header")
        key, eq, value = data[sp + 1:pos + length - 1].partition(b"=")
        if not eq:
            raise LayerError(f"{label}: malformed PAX record {key[:40]!r}")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _int(value: bytes, what: str, label: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise LayerError(f"{label}: PAX {what} {value[:40]!r} is not a number") from None
    if n < 0:
        raise LayerError(f"{label}: PAX {what} is negative")
    return n


class _Header:
    """The fields of one 512-byte header we use (Go's archive/tar reading, which is what
    docker and umoci read layers with: the ustar prefix only under the POSIX magic)."""

    __slots__ = ("name", "mode", "uid", "gid", "size", "mtime", "type", "linkname",
                 "devmajor", "devminor")


def _number(field: bytes) -> int:
    """An octal (NUL/space padded) or base-256 (GNU, high bit set) header number."""
    if field[0] & 0x80:
        n = int.from_bytes(field[1:], "big") | ((field[0] & 0x3F) << (8 * (len(field) - 1)))
        return -n if field[0] & 0x40 else n  # 0xff: negative
    text = field.rstrip(b"\0 ")
    return int(text, 8) if text else 0


def parse_header(buf: bytes) -> _Header:
    """ValueError for anything that is not a valid tar header."""
    stored = buf[148:156]
    try:
        want = _number(stored)
    except ValueError:
        raise ValueError("bad checksum field") from None
    unsigned = sum(buf) - sum(stored) + 256
    if want != unsigned:
        signed = unsigned - 256 * sum(1 for b in buf[:148] + buf[156:] if b >= 128)
        if want != signed:
            raise ValueError("bad checksum")
    h = _Header()
    name = buf[:100].split(b"\0", 1)[0]
    h.type = buf[156:157]
    if buf[257:265] == b"ustar\x0000":
        prefix = buf[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    h.name = name.decode("utf-8", "surrogateescape")
    h.linkname = buf[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    h.mode = _number(buf[100:108])
    h.uid = _number(buf[108:116])
    h.gid = _number(buf[116:124])
    h.size = _number(buf[124:136])
    h.mtime = _number(buf[136:148])
    if h.type in (CHR, BLK):
        h.devmajor = _number(buf[329:337])
        h.devminor = _number(buf[337:345])
    else:
        h.devmajor = h.devminor = 0
    if h.size < 0 or h.uid < 0 or h.gid < 0:
        raise ValueError("negative size or id")
    return h


def entries(stream: _Stream, label: str) -> Iterator[Entry]:
    """The members of a tar stream, PAX and GNU extensions folded in. The caller must consume
    (copy or skip) exactly `entry.size` bytes of a regular file before asking for the next."""
    global_pax: dict[str, bytes] = {}
    pax: dict[str, bytes] = {}
    long_name: str | None = None
    long_link: str | None = None
    pending = 0  # data bytes of the previous entry the caller was meant to consume
    while True:
        buf = stream.read(BLOCK)
        if not buf:
            return  # EOF without end-of-archive blocks: accepted, as tarfile does
        if len(buf) < BLOCK:
            raise stream._truncated()
        if buf == ZERO_BLOCK:
            return
        try:
            ti = parse_header(buf)
        except ValueError as e:
            raise LayerError(f"{label}: not a valid tar archive ({e})") from None
        kind = ti.type
        if kind in (PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK):
            if ti.size > MAX_EXTENDED:
                raise LayerError(f"{label}: extended header of {ti.size} bytes is too large")
            data = stream.read(ti.size)
            if len(data) < ti.size:
                raise stream._truncated()
            stream.skip(-ti.size % BLOCK)
            if kind == PAX:
                pax.update(_pax_records(data, label))
            elif kind == PAX_GLOBAL:
                global_pax.update(_pax_records(data, label))
            elif kind == GNU_LONGNAME:
                long_name = _text(data.split(b"\0", 1)[0])
            else:
                long_link = _text(data.split(b"\0", 1)[0])
            continue
        if kind not in _KNOWN:
            what = _NAMES.get(kind, f"type {kind!r}")
            raise LayerError(f"{label}: {ti.name}: {what} entries are not supported")
        rec = {**global_pax, **pax} if global_pax else pax
        name = long_name if long_name is not None else ti.name
        linkname = long_link if long_link is not None else ti.linkname
        size, uid, gid = ti.size, ti.uid, ti.gid
        mtime_ns = ti.mtime * 1_000_000_000
        atime_ns = -1
        xattrs: dict[str, bytes] = {}
        if rec:
            if "path" in rec:
                name = _text(rec["path"])
            if "linkpath" in rec:
                linkname = _text(rec["linkpath"])
            if "size" in rec:
                size = _int(rec["size"], "size", label)
            if "uid" in rec:
                uid = _int(rec["uid"], "uid", label)
            if "gid" in rec:
                gid = _int(rec["gid"], "gid", label)
            if "mtime" in rec:
                mtime_ns = _ns(rec["mtime"], "mtime")
            if "atime" in rec:
                atime_ns = _ns(rec["atime"], "atime")
            for k, v in rec.items():
                if k.startswith("SCHILY.xattr."):
                    xattrs[k[13:]] = v
                elif k.startswith("LIBARCHIVE.xattr."):
                    try:
                        xattrs[urllib.parse.unquote(k[17:])] = base64.b64decode(v)
                    except ValueError:
                        raise LayerError(f"{label}: {name}: bad {k}") from None
                elif k.startswith("GNU.sparse."):
                    raise LayerError(f"{label}: {name}: GNU sparse files are not supported")
        if kind in (DIR, AREG) and name.endswith("/"):
            kind = DIR
        e = Entry(name, kind, size if kind in _REGULAR else 0, ti.mode, uid, gid, mtime_ns,
                  atime_ns if atime_ns >= 0 else mtime_ns, linkname, ti.devmajor, ti.devminor,
                  xattrs)
        pax, long_name, long_link = {}, None, None
        pending = e.size
        yield e
        # the caller consumed the data; skip the padding to the next block
        stream.skip(-pending % BLOCK)


# -- paths -------------------------------------------------------------------------------------
def split_name(name: str, label: str = "layer", what: str = "entry") -> list[str]:
    """A tar name as path components; absolute names and `..` are refused."""
    if name.startswith("/"):
        raise UnsafeLayer(f"{label}: {what} {name!r} is an absolute path; refusing an entry "
                          "that would land outside the rootfs")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise UnsafeLayer(f"{label}: {what} {name!r} contains '..'; refusing an entry that "
                          "would land outside the rootfs")
    if any("\0" in p for p in parts):
        raise LayerError(f"{label}: {what} {name!r} contains a NUL byte")
    return parts


class Resolver:
    """Paths inside `root` resolved like a chroot would, without ever leaving it: every
    component is lstat'ed; symlinks are followed inside the root; a `..` above the root is
    refused. Resolved directories are cached (keyed by the unresolved path) until a
    directory or symlink is removed."""

    def __init__(self, root: str, label: str = "layer") -> None:
        self.root = os.path.realpath(root)
        self.label = label
        self.cache: dict[str, str] = {"": ""}
        self.implicit: list[str] = []
        self.before_mkdir: Any = None  # called with a parent's host path before mkdir in it
        self._links = 0
        self._entry = ""

    def host(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def forget(self) -> None:
        self.cache = {"": ""}

    def directory(self, parts: list[str], create: bool, entry: str) -> str:
        """The resolved relative path of the directory `parts`, made (0755, root) if missing
        and `create`; LayerError if it is missing (not `create`) or not a directory."""
        key = "/".join(parts)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        self._links, self._entry = 0, entry
        # from the longest prefix already resolved, one component at a time (no recursion:
        # a layer may nest thousands of directories)
        i = len(parts) - 1
        while i > 0 and "/".join(parts[:i]) not in self.cache:
            i -= 1
        rel = self.cache["/".join(parts[:i])]
        for j in range(i, len(parts)):
            rel = self._step(rel, parts[j], create)
            self.cache["/".join(parts[:j + 1])] = rel
        return rel

    def _step(self, parent: str, name: str, create: bool) -> str:
        rel = f"{parent}/{name}" if parent else name
        path = self.host(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{self.label}: {self._entry}: /{rel} does not exist") from None
            if self.before_mkdir is not None:
                self.before_mkdir(self.host(parent))
            os.mkdir(path, 0o755)
            self.implicit.append(rel)
            return rel
        except NotADirectoryError:
            raise LayerError(f"{self.label}: {self._entry}: /{parent} is not a "
                             "directory") from None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return rel
        if stat.S_ISLNK(mode):
            return self._follow(parent, rel, os.readlink(path), create)
        raise LayerError(f"{self.label}: {self._entry}: /{rel} is not a directory")

    def _follow(self, base: str, link: str, target: str, create: bool) -> str:
        self._links += 1
        if self._links > MAX_LINKS:
            raise LayerError(f"{self.label}: {self._entry}: too many levels of symbolic links")
        cur = "" if target.startswith("/") else base
        for comp in target.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not cur:
                    raise UnsafeLayer(
                        f"{self.label}: {self._entry}: goes through the symlink /{link} -> "
                        f"{target}, which leads outside the rootfs; refusing it")
                cur = cur.rpartition("/")[0]
                continue
            cur = self._step(cur, comp, create)
        return cur

    def existing(self, parts: list[str], entry: str) -> tuple[str, os.stat_result]:
        """(host path, lstat) of an existing entry; its last component is not followed."""
        if not parts:
            return self.root, os.lstat(self.root)
        parent = self.directory(parts[:-1], False, entry)
        rel = f"{parent}/{parts[-1]}" if parent else parts[-1]
        path = self.host(rel)
        try:
            return path, os.lstat(path)
        except FileNotFoundError:
            raise LayerError(f"{self.label}: {entry}: /{rel} does not exist") from None

    def follow(self, path: str, entry: str) -> str:
        """The host path of `path` (absolute inside the root) with every symlink followed,
        the last one too, never leaving the root. For reading files like /etc/passwd."""
        parts = split_name(path.lstrip("/"), self.label, "path")
        if not parts:
            return self.root
        parent = self.directory(parts[:-1], False, entry)
        self._links, self._entry = 0, entry
        rel = f"{parent}/{parts[-1]}" if parent else parts[-1]
        st = os.lstat(self.host(rel))
        if stat.S_ISLNK(st.st_mode):
            rel = self._follow_file(parent, rel)
        return self.host(rel)

    def _follow_file(self, base: str, link: str) -> str:
        while True:
            target = os.readlink(self.host(link))
            self._links += 1
            if self._links > MAX_LINKS:
                raise LayerError(f"{self.label}: {self._entry}: too many symbolic links")
            comps = [c for c in target.split("/") if c not in ("", ".")]
            cur = "" if target.startswith("/") else base
            for i, comp in enumerate(comps):
                if comp == "..":
                    if not cur:
                        raise UnsafeLayer(f"{self.label}: {self._entry}: the symlink /{link} "
                                          f"-> {target} leads outside the rootfs")
                    cur = cur.rpartition("/")[0]
                elif i < len(comps) - 1:
                    cur = self._step(cur, comp, False)
                else:
                    cur = f"{cur}/{comp}" if cur else comp
            if not comps or comps[-1] == "..":
                return cur
            st = os.lstat(self.host(cur))
            if not stat.S_ISLNK(st.st_mode):
                return cur
            base, link = cur.rpartition("/")[0], cur


# -- applying ----------------------------------------------------------------------------------
def _rm(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for every
    thread)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o7777  # unknown: always chmod


class Applier:
    """Applies layer after layer onto `root` (one Applier per tree; one layer at a time)."""

    def __init__(self, root: str, overlay: bool = False, chown: bool | None = None,
                 owner: tuple[int, int] | None = None) -> None:
        """`owner`, if given, owns every entry instead of the tar's uid/gid (ADD --chown)."""
        self.root = os.path.realpath(root)
        self.overlay = overlay
        self.chown = os.geteuid() == 0 if chown is None else chown
        self.owner = owner
        self.umask = _umask()

    def apply(self, raw: BinaryIO, label: str = "layer", diff_id: str | None = None) -> Stats:
        """Apply one layer read from `raw` (compressed or not; a store blob reader checks its
        digest at EOF). Raises LayerError/UnsafeLayer; the tree is then half-applied and the
        caller must throw it away."""
        with _pipeline(raw, label, diff_id) as stream:
            return _LayerRun(self, stream, label).run()


class _LayerRun:
    def __init__(self, ap: Applier, stream: _Stream, label: str) -> None:
        self.ap = ap
        self.stream = stream
        self.label = label
        self.res = Resolver(ap.root, label)
        self.res.before_mkdir = self._touch_parent
        self.stats = Stats()
        self.dir_times: list[tuple[str, int, int]] = []
        self.parent_times: dict[str, tuple[int, int]] = {}
        self.added: set[str] = set()  # relative paths this layer wrote (copy mode)
        self._consumed = False
        self._last_parent: str | None = None

    def run(self) -> Stats:
        for e in entries(self.stream, self.label):
            self.stats.entries += 1
            try:
                self._entry(e)
            except LayerError:
                raise
            except FileNotFoundError as err:
                raise LayerError(f"{self.label}: {e.name}: {err.strerror}: "
                                 f"{err.filename or ''}") from None
            except (OSError, ValueError) as err:
                msg = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                raise LayerError(f"{self.label}: {e.name}: {msg}") from None
            if e.kind in _REGULAR and e.size and not self._consumed:
                self.stream.skip(e.size)
        self._finish_times()
        self.stats.implicit_dirs = self.res.implicit
        return self.stats

    # -- helpers ------------------------------------------------------------------------------
    def _touch_parent(self, parent_path: str) -> None:
        """Remember a parent's times before a whiteout changes it, to restore them."""
        if parent_path not in self.parent_times:
            st = os.lstat(parent_path)
            self.parent_times[parent_path] = (st.st_atime_ns, st.st_mtime_ns)

    def _clear(self, path: str) -> None:
        """Remove whatever is at `path` (not following a symlink)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.res.forget()
        _rm(path, st)

    def _ids(self, e: Entry) -> tuple[int, int]:
        return self.ap.owner if self.ap.owner is not None else (e.uid, e.gid)

    def _owner(self, path: str | int, e: Entry) -> None:
        if self.ap.chown:
            os.chown(path, *self._ids(e), follow_symlinks=False)

    def _xattrs(self, target: str | int, e: Entry, symlink: bool = False) -> None:
        for k, v in e.xattrs.items():
            if k.startswith(DROPPED_XATTR_PREFIX):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, k, v)
                else:
                    os.setxattr(target, k, v, follow_symlinks=False)
            except OSError as err:
                if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue
                if symlink and err.errno == errno.EPERM and k.startswith("user."):
                    continue  # user.* xattrs are not allowed on symlinks
                raise LayerError(f"{self.label}: {e.name}: setting xattr {k}: "
                                 f"{err.strerror}") from None

    # -- entries ------------------------------------------------------------------------------
    def _entry(self, e: Entry) -> None:
        self._consumed = False
        parts = split_name(e.name, self.label)
        if not parts:
            return self._root_entry(e)
        base = parts[-1]
        if base.startswith(WHITEOUT):
            return self._whiteout(e, parts)
        parent = self.res.directory(parts[:-1], True, e.name)
        if parent != self._last_parent:  # its times are put back at the end, as umoci does
            self._last_parent = parent
            self._touch_parent(self.res.host(parent))
        rel = f"{parent}/{base}" if parent else base
        path = self.res.host(rel)
        if not self.ap.overlay:
            self.added.add(rel)
        kind = e.kind
        if kind in _REGULAR:
            self._file(e, path)
        elif kind == DIR:
            self._dir(e, path, rel, "/".join(parts))
        elif kind == SYM:
            self._symlink(e, path)
        elif kind == LNK:
            self._hardlink(e, path)
        else:
            self._node(e, path)

    def _root_entry(self, e: Entry) -> None:
        if e.kind != DIR:
            raise LayerError(f"{self.label}: {e.name!r} names the root but is not a directory")
        root = self.ap.root
        self._owner(root, e)
        os.chmod(root, e.mode & 0o7777)
        self._xattrs(root, e)
        self.dir_times.append((root, e.atime_ns, e.mtime_ns))

    def _file(self, e: Entry, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        perm = e.mode & 0o7777
        # open() gives perm & ~umask; chown clears setuid/setgid: chmod only when needed
        exact = not perm & (0o7000 | self.ap.umask)
        create = perm if exact else 0o600
        try:
            fd = os.open(path, flags, create)
        except FileExistsError:
            self._clear(path)
            fd = os.open(path, flags, create)
        try:
            if e.size:
                self.stream.copy(fd, e.size)
                self.stats.bytes += e.size
            self._consumed = True
            if self.ap.chown:
                os.fchown(fd, *self._ids(e))
            if not exact:
                os.fchmod(fd, perm)
            if e.xattrs:
                self._xattrs(fd, e)
            os.utime(fd, ns=(e.atime_ns, e.mtime_ns))
        finally:
            os.close(fd)
        self.stats.files += 1

    def _dir(self, e: Entry, path: str, rel: str, key: str) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                self._clear(path)
                os.mkdir(path, 0o700)
        self._owner(path, e)
        os.chmod(path, e.mode & 0o7777)
        if e.xattrs:
            self._xattrs(path, e)
        self.dir_times.append((path, e.atime_ns, e.mtime_ns))
        self.res.cache[key] = rel
        self.stats.dirs += 1

    def _symlink(self, e: Entry, path: str) -> None:
        if not e.linkname:
            raise LayerError(f"{self.label}: {e.name}: symlink with an empty target")
        try:
            os.symlink(e.linkname, path)
        except FileExistsError:
            self._clear(path)
            os.symlink(e.linkname, path)
        self._owner(path, e)
        if e.xattrs:
            self._xattrs(path, e, symlink=True)
        os.utime(path, ns=(e.atime_ns, e.mtime_ns), follow_symlinks=False)
        self.stats.symlinks += 1

    def _hardlink(self, e: Entry, path: str) -> None:
        tparts = split_name(e.linkname, self.label, f"hardlink {e.name} target")
        if not tparts:
            raise UnsafeLayer(f"{self.label}: hardlink {e.name} -> {e.linkname!r} names the "
                              "rootfs itself")
        try:
            tpath, tst = self.res.existing(tparts, e.name)
        except LayerError as err:
            if isinstance(err, UnsafeLayer):
                raise
            where = "this layer" if self.ap.overlay else "the rootfs"
            raise LayerError(f"{self.label}: hardlink {e.name} -> {e.linkname}: the target is "
                             f"not in {where}") from None
        if stat.S_ISDIR(tst.st_mode):
            raise LayerError(f"{self.label}: hardlink {e.name} -> {e.linkname}: the target is "
                             "a directory")
        if tpath == path:
            return
        try:
            os.link(tpath, path, follow_symlinks=False)
        except FileExistsError:
            st = os.lstat(path)
            if st.st_ino == tst.st_ino and st.st_dev == tst.st_dev:
                return
            self._clear(path)
            os.link(tpath, path, follow_symlinks=False)
        self.stats.hardlinks += 1

    def _node(self, e: Entry, path: str) -> None:
        kind = e.kind
        if kind == FIFO:
            fmt, dev = stat.S_IFIFO, 0
        else:
            fmt = stat.S_IFCHR if kind == CHR else stat.S_IFBLK
            dev = os.makedev(e.devmajor, e.devminor)
        try:
            os.mknod(path, fmt | 0o600, dev)
        except FileExistsError:
            self._clear(path)
            os.mknod(path, fmt | 0o600, dev)
        except PermissionError:
            raise LayerError(f"{self.label}: {e.name}: making a device node needs root "
                             "(CAP_MKNOD)") from None
        self._owner(path, e)
        os.chmod(path, e.mode & 0o7777)
        if e.xattrs:
            self._xattrs(path, e)
        os.utime(path, ns=(e.atime_ns, e.mtime_ns))
        self.stats.devices += 1

    def _whiteout(self, e: Entry, parts: list[str]) -> None:
        base = parts[-1]
        self.stats.whiteouts += 1
        if base.startswith(WHITEOUT_META) and base != OPAQUE:
            return
        parent = self.res.directory(parts[:-1], True, e.name)
        parent_path = self.res.host(parent)
        if base == OPAQUE:
            if self.ap.overlay:
                os.setxattr(parent_path, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
                return
            self._touch_parent(parent_path)
            prefix = f"{parent}/" if parent else ""
            for child in os.listdir(parent_path):
                if prefix + child not in self.added:
                    self._clear(f"{parent_path}/{child}")
            return
        victim = base[len(WHITEOUT):]
        if victim in ("", ".", "..") or "/" in victim:
            raise UnsafeLayer(f"{self.label}: whiteout {e.name!r} names {victim!r}; refusing it")
        path = f"{parent_path}/{victim}"
        if self.ap.overlay:
            self._clear(path)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            self._owner(path, e)
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self._touch_parent(parent_path)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.res.forget()
        _rm(path, st)
        self.added.discard(f"{parent}/{victim}" if parent else victim)

    def _finish_times(self) -> None:
        for path, (atime, mtime) in self.parent_times.items():
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        for path, atime, mtime in reversed(self.dir_times):
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def apply_file(root: str, path: str, overlay: bool = False, label: str | None = None,
               diff_id: str | None = None) -> Stats:
    """Apply the layer tarball at `path` (any compression) onto `root`."""
    with open(path, "rb") as f:
        return Applier(root, overlay).apply(f, label or os.path.basename(path), diff_id)


def read_file_in(root: str, path: str, limit: int = 4 << 20) -> bytes | None:
    """The contents of `path` inside the rootfs (symlinks followed inside it only), or None if
    it does not exist. UnsafeLayer if a symlink on the way leads out of the rootfs."""
    res = Resolver(root, "rootfs")
    try:
        host = res.follow(path, path)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except LayerError as e:
        if isinstance(e, UnsafeLayer):
            raise
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LayerError(f"{path} in the rootfs is larger than {limit} bytes")
    return data
