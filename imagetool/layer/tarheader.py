"""The tar header reader: a tar stream -> its entries, PAX and GNU extensions folded in.

Go's archive/tar reading (what docker and umoci read layers with): the ustar prefix only under
the POSIX magic, octal or base-256 numbers, checksums signed or unsigned, PAX records (path,
linkpath, size, ids, times with nanoseconds, SCHILY.xattr.* and LIBARCHIVE.xattr.*), GNU long
names. Sparse files, volume labels and other rare kinds are refused with their name.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from .base import LayerError
from .stream import Stream

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
MAX_EXTENDED = 16 << 20  # bytes of one PAX or GNU long-name header we are willing to hold


# tar type flags
REG, AREG, CONT = b"0", b"\0", b"7"
LNK, SYM, CHR, BLK, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
SPARSE = b"S"
REGULAR = (REG, AREG, CONT)
_KNOWN = frozenset({*REGULAR, LNK, SYM, CHR, BLK, DIR, FIFO})
_NAMES = {SPARSE: "GNU sparse file", b"V": "volume label", b"M": "multi-volume continuation",
          b"N": "GNU old long name", b"D": "GNU dump directory"}


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


class Header:
    """The fields of one 512-byte header we use (Go's archive/tar reading, which is what
    docker and umoci read layers with: the ustar prefix only under the POSIX magic)."""

    __slots__ = ("name", "mode", "uid", "gid", "size", "mtime", "type", "linkname",
                 "devmajor", "devminor")
    name: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    type: bytes
    linkname: str
    devmajor: int
    devminor: int


def _number(field: bytes) -> int:
    """An octal (NUL/space padded) or base-256 (GNU, high bit set) header number."""
    if field[0] & 0x80:
        n = int.from_bytes(field[1:], "big") | ((field[0] & 0x3F) << (8 * (len(field) - 1)))
        return -n if field[0] & 0x40 else n  # 0xff: negative
    text = field.rstrip(b"\0 ")
    return int(text, 8) if text else 0


def parse_header(buf: bytes) -> Header:
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
    h = Header()
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


def entries(stream: Stream, label: str) -> Iterator[Entry]:
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
            raise stream.truncated()
        if buf == ZERO_BLOCK:
            return
        try:
            ti = parse_header(buf)
        except ValueError as err:
            raise LayerError(f"{label}: not a valid tar archive ({err})") from None
        kind = ti.type
        if kind in (PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK):
            if ti.size > MAX_EXTENDED:
                raise LayerError(f"{label}: extended header of {ti.size} bytes is too large")
            data = stream.read(ti.size)
            if len(data) < ti.size:
                raise stream.truncated()
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
        e = Entry(name, kind, size if kind in REGULAR else 0, ti.mode, uid, gid, mtime_ns,
                  atime_ns if atime_ns >= 0 else mtime_ns, linkname, ti.devmajor, ti.devminor,
                  xattrs)
        pax, long_name, long_link = {}, None, None
        pending = e.size
        yield e
        # the caller consumed the data; skip the padding to the next block
        stream.skip(-pending % BLOCK)

