"""imagetool.layer.tarheader: the tar header reader on archives Python's tarfile writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from imagetool.layer import LayerError
from imagetool.layer.stream import pipeline
from imagetool.layer.tarheader import DIR, REG, SYM, entries, parse_header


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size = kind, size
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def _read(data: bytes) -> list[tuple]:
    out = []
    with pipeline(io.BytesIO(data), "t", None) as s:
        for e in entries(s, "t"):
            body = s.read(e.size)
            out.append((e, body))
    return out


def test_pax_names_times_ids_and_xattrs_are_folded_in():
    long = "d/" + "x" * 200
    ti = _info(long, size=3, uid=3_000_000, gid=7, mode=0o4755)
    ti.pax_headers = {"mtime": "1700000000.123456789", "atime": "1600000000.5",
                      "SCHILY.xattr.user.k": "v"}
    got = _read(_tar([(_info("d", tarfile.DIRTYPE, mode=0o755), None), (ti, b"abc")],
                     tarfile.PAX_FORMAT))
    (d, _), (f, body) = got
    assert d.kind == DIR and d.name == "d/"  # as written; split_name drops the slash
    assert (f.name, f.kind, f.size, body) == (long, REG, 3, b"abc")
    assert (f.uid, f.gid, f.mode) == (3_000_000, 7, 0o4755)
    assert f.mtime_ns == 1_700_000_000_123_456_789
    assert f.atime_ns == 1_600_000_000_500_000_000
    assert f.xattrs == {"user.k": b"v"}


def test_gnu_long_names_and_links_and_base256_ids():
    link = _info("l" * 150, tarfile.SYMTYPE, linkname="t" * 150, uid=0o77777777 + 1)
    [(e, _)] = _read(_tar([(link, None)], tarfile.GNU_FORMAT))
    assert (e.name, e.kind, e.linkname, e.uid) == ("l" * 150, SYM, "t" * 150, 0o77777777 + 1)


def test_the_header_checksum_is_checked():
    raw = bytearray(_tar([(_info("f", size=1), b"x")], tarfile.USTAR_FORMAT))
    assert parse_header(bytes(raw[:512])).name == "f"
    raw[0] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        parse_header(bytes(raw[:512]))
    with pytest.raises(LayerError, match="not a valid tar archive"):
        _read(bytes(raw))


@pytest.mark.parametrize("case,message", [
    ("sparse", "GNU sparse"),
    ("bad-pax", "malformed PAX"),
    ("pax-size", "not a number"),
    ("truncated", "truncated"),
])
def test_what_the_reader_refuses(case, message):
    if case == "sparse":
        ti = _info("s", size=1)
        ti.pax_headers = {"GNU.sparse.major": "1"}
        data = _tar([(ti, b"x")], tarfile.PAX_FORMAT)
    elif case == "bad-pax":
        hdr = _info("././@PaxHeader", tarfile.XHDTYPE, size=6)
        data = _tar([(hdr, b"junk\n\n"), (_info("f"), None)], tarfile.USTAR_FORMAT)
    elif case == "pax-size":
        ti = _info("f")
        ti.pax_headers = {"size": "ten"}
        data = _tar([(ti, None)], tarfile.PAX_FORMAT)
    else:
        data = _tar([(_info("f", size=2000), b"y" * 2000)], tarfile.USTAR_FORMAT)[:1024]
    with pytest.raises(LayerError, match=message):
        _read(data)


def test_an_archive_without_end_blocks_is_accepted_as_tarfile_does():
    data = _tar([(_info("f", size=1), b"z")], tarfile.USTAR_FORMAT)[:1024]
    [(e, body)] = _read(data)
    assert (e.name, body) == ("f", b"z")
