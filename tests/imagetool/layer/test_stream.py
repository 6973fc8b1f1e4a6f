"""imagetool.layer.stream: the decompress/digest stream, on real gzip/zstd/plain bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest

from imagetool import compression
from imagetool.layer import LayerError
from imagetool.layer.stream import CHUNK, pipeline

DATA = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # a few chunks and a ragged end


def _packed(kind: str) -> bytes:
    if kind == "plain":
        return DATA
    if kind == "gzip":
        return gzip.compress(DATA)
    w = compression.writer("zstd")
    return w.compress(DATA) + w.flush()


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd"])
def test_exact_reads_skips_and_copies_give_the_plain_bytes(tmp_path, kind):
    diff_id = "sha256:" + hashlib.sha256(DATA).hexdigest()
    out = tmp_path / "out"
    with pipeline(io.BytesIO(_packed(kind)), "t", diff_id) as s:
        head = s.read(10)
        s.skip(CHUNK)                       # across a chunk boundary
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            s.copy(fd, CHUNK + 5)
        finally:
            os.close(fd)
        rest = s.read(len(DATA))            # short read at the end, no error
    assert head == DATA[:10]
    assert out.read_bytes() == DATA[10 + CHUNK:10 + 2 * CHUNK + 5]
    assert rest == DATA[10 + 2 * CHUNK + 5:]


def test_a_wrong_diff_id_is_refused_when_the_stream_ends():
    wrong = "sha256:" + "0" * 64
    with pytest.raises(LayerError, match="not its diff_id"):
        with pipeline(io.BytesIO(gzip.compress(DATA)), "t", wrong) as s:
            s.read(100)


def test_a_corrupt_blob_is_a_layer_error_naming_the_label():
    bad = gzip.compress(DATA)[:-40] + b"\0" * 40
    with pytest.raises(LayerError, match="^t: "):
        with pipeline(io.BytesIO(bad), "t", None) as s:
            s.skip(len(DATA))


def test_copying_or_skipping_past_the_end_is_a_truncated_archive(tmp_path):
    with pytest.raises(LayerError, match="truncated"):
        with pipeline(io.BytesIO(b"x" * 100), "t", None) as s:
            s.skip(101)
    fd = os.open(tmp_path / "o", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(LayerError, match="truncated"):
            with pipeline(io.BytesIO(b"x" * 100), "t", None) as s:
                s.copy(fd, 200)
    finally:
        os.close(fd)


def test_a_consumer_that_stops_early_does_not_leave_the_reader_thread_behind():
    import threading
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(RuntimeError):
        with pipeline(io.BytesIO(DATA * 4), "t", None) as s:
            s.read(1)
            raise RuntimeError("consumer gave up")
    left = [t for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("layer-reader")]
    assert left == []
