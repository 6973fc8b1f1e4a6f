"""COPY/ADD as BuildKit does them, on real builds over a busybox image in a private store:
heredoc sources (expansion, quoted and `<<-` delimiters, several at once, --chown/--chmod),
ADD of http(s) URLs from an http.server on 127.0.0.1 started here (name, mode 0600,
Last-Modified or 0 as mtime, no extraction, --checksum, cache hit/miss on the content, errors naming
Dockerfile:LINE and the URL), symbolic --chmod, and --link giving the same layer. The layers'
tar members are checked (names, modes, owners, contents, mtimes); nothing is left behind."""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imagetool import bundle
from imagetool.builder import chmod, fetch
from imagetool.builder.executor import BuildError
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import builds, busybox_store

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
LAST_MODIFIED = 1_600_000_000   # 2020-09-13T12:26:40Z


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def env():
    with busybox_store("itcopy-") as e:
        yield e


@pytest.fixture
def build(env):
    with builds(env, tag="copy:latest") as run:
        yield run


class _Server:
    """http.server on 127.0.0.1: `files` maps a path to (body, Last-Modified epoch or None)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int | None]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                found = server.files.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404, "Not Found")
                    return
                body, mtime = found
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                if mtime is not None:
                    self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def http():
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _parts(store: Store, name: str = "copy:latest") -> dict:
    return bundle.image_parts(store, f"docker.io/library/{name}")


def _members(store: Store, desc: dict) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.rstrip("/")] = (m, f.read() if f else None)
    return out


def _layers(store: Store, name: str = "copy:latest") -> list[dict]:
    """The built layers' members, base layer left out."""
    return [_members(store, desc) for desc, _ in _parts(store, name)["chain"][1:]]


def _tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"inside\n"
        ti = tarfile.TarInfo("pkg/inside.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _blobs(env) -> set[str]:
    return set(os.listdir(os.path.join(env["root"], "blobs", "sha256")))


# ------------------------------------------------------------------ heredocs

@root_only
def test_copy_and_add_heredocs(env, build):
    start = int(time.time())
    df = ("FROM busybox\n"
          "ARG NAME=world\n"
          "ENV GREETING=hello\n"
          "COPY <<EOF /etc/greeting\n"
          '$GREETING ${NAME} "quoted" \\$HOME\n'
          "EOF\n"
          "COPY <<'RAW' <<-TABS /docs/\n"
          "$NAME stays\n"
          "RAW\n"
          "\ttabbed $NAME\n"
          "\t\ttwo\n"
          "\tTABS\n"
          "ADD --chown=user:user --chmod=0640 <<EOF /add.txt\n"
          "added\n"
          "EOF\n"
          "COPY --chmod=u+x,g-w <<run.sh /tmp\n"
          "#!/bin/sh\n"
          "run.sh\n"
          "COPY --link <<EOF linked.txt\n"
          "linked\n"
          "EOF\n")
    b, store = build(df, build_args={"NAME": "you"})
    greeting, docs, add, script, linked = _layers(store)
    m, data = greeting["etc/greeting"]
    assert data == b'hello you "quoted" $HOME\n'
    assert (m.mode, m.uid, m.gid) == (0o644, 0, 0) and start - 2 <= m.mtime <= time.time() + 2
    assert docs["docs/RAW"][1] == b"$NAME stays\n"
    assert docs["docs/TABS"][1] == b"tabbed you\ntwo\n"
    assert docs["docs/RAW"][0].mode == docs["docs/TABS"][0].mode == 0o644
    m, data = add["add.txt"]
    assert data == b"added\n" and (m.mode, m.uid, m.gid) == (0o640, 1000, 1000)
    m, data = script["tmp/run.sh"]   # /tmp exists: the file goes inside it
    assert data == b"#!/bin/sh\n" and m.mode == 0o744
    assert linked["linked.txt"][1] == b"linked\n"
    made_by = [h["created_by"] for h in _parts(store)["config"]["history"]]
    assert made_by[-5:-3] == ["/bin/sh -c #(nop) COPY <<EOF /etc/greeting",
                              "/bin/sh -c #(nop) COPY <<RAW <<TABS /docs/"], made_by
    # the expanded body is part of the key: the same build hits (5 filesystem steps), a
    # changed ARG misses from the first COPY that uses it
    b2, _ = build(df, build_args={"NAME": "you"})
    assert b2.cached == 5 and b2.result.manifest == b.result.manifest
    b3, store = build(df, build_args={"NAME": "them"})
    assert b3.cached == 0
    assert _layers(store)[1]["docs/TABS"][1] == b"tabbed them\ntwo\n"


# ------------------------------------------------------------------ ADD <url>

@root_only
def test_add_url_name_mode_mtime_no_extraction_and_cache(env, build, http):
    tgz = _tgz()
    http.files["/files/app.tar.gz"] = (tgz, LAST_MODIFIED)
    http.files["/data.bin"] = (b"\x00\x01data\n", None)
    http.files["/dir/"] = (b"index\n", LAST_MODIFIED)
    http.files["/x.sh"] = (b"echo x\n", LAST_MODIFIED)
    u = http.base
    df = ("FROM busybox\n"
          f"ADD {u}/files/app.tar.gz /opt/\n"
          f"ADD --chown=1234:5678 {u}/data.bin /data/blob\n"
          f"ADD {u}/dir/ {u}/x.sh?v=1 /many/\n"
          "WORKDIR /w\n"
          f"ADD --chmod=a=rX {u}/x.sh .\n")
    b, store = build(df)
    app, data, many, _, x = _layers(store)
    m, body = app["opt/app.tar.gz"]
    assert body == tgz and "opt/pkg" not in app         # remote archives stay archives
    assert (m.mode, m.uid, m.gid, m.mtime) == (0o600, 0, 0, LAST_MODIFIED)
    m, body = data["data/blob"]
    assert body == b"\x00\x01data\n" and (m.mode, m.uid, m.gid) == (0o600, 1234, 5678)
    assert m.mtime == 0                                   # no Last-Modified: the epoch
    assert sorted(k for k in many if k.startswith("many/")) == ["many/dir", "many/x.sh"]
    assert x["w/x.sh"][0].mode == 0o444
    # unchanged content: every step hits (each URL still asked once)
    asked = len(http.requests)
    b2, _ = build(df)
    assert b2.cached == 5 and len(http.requests) == asked + 5
    # changed content: that step and those after it miss
    http.files["/data.bin"] = (b"new data\n", None)
    b3, store = build(df)
    assert b3.cached == 1   # the first ADD; WORKDIR and the last ADD follow the change
    assert _layers(store)[1]["data/blob"][1] == b"new data\n"


@root_only
def test_add_url_checksum(env, build, http):
    body = b"pinned content\n"
    good = "sha256:" + hashlib.sha256(body).hexdigest()
    http.files["/pinned.txt"] = (body, LAST_MODIFIED)
    df = f"FROM busybox\nADD --checksum={good} {http.base}/pinned.txt /pinned\n"
    b, store = build(df)
    m, data = _layers(store)[0]["pinned"]
    assert data == body and m.mode == 0o600
    # the checksum is the key: a rebuild hits without asking the server
    asked = len(http.requests)
    b2, _ = build(df)
    assert b2.cached == 1 and len(http.requests) == asked
    # a mismatch fails before any layer is written, naming the line and the URL
    bad = "sha256:" + "0" * 64
    before = _blobs(env)
    with pytest.raises(BuildError) as ei:
        build(f"FROM busybox\nWORKDIR /w\nADD --checksum={bad} {http.base}/pinned.txt p\n",
              tag="bad:1")
    msg = str(ei.value)
    assert "Dockerfile:3" in msg and "/pinned.txt" in msg and "checksum mismatch" in msg
    assert good in msg and bad in msg
    assert _blobs(env) - before <= _blobs_of_workdir_layer(env)


def _blobs_of_workdir_layer(env) -> set[str]:
    """The WORKDIR /w layer written before the failing ADD (the only blob it may leave)."""
    store = Store(env["root"])
    cache = os.path.join(env["root"], "build-cache")
    out = set()
    for name in os.listdir(cache):
        with open(os.path.join(cache, name)) as f:
            rec = json.load(f)
        if rec.get("layer"):
            out.add(rec["layer"]["digest"].split(":")[1])
    return {d for d in out if store.has_blob("sha256:" + d)}


@root_only
@pytest.mark.parametrize("path,text", [("/missing", "HTTP 404"), (None, "Connection refused")])
def test_add_url_errors_name_line_and_url(env, build, http, path, text):
    if path is None:    # a port nothing listens on
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/file"
        s.close()
    else:
        url = http.base + path
    with pytest.raises(BuildError) as ei:
        build(f"FROM busybox\nADD {url} /f\n", tag="bad:2")
    msg = str(ei.value)
    assert "Dockerfile:2" in msg and url in msg and text in msg


# ------------------------------------------------------------------ --chmod, --link

@root_only
def test_symbolic_chmod_on_context_files(env, build):
    df = ("FROM busybox\n"
          "COPY --chmod=u+x,g-w src/ /a/\n"
          "COPY --chmod=a=rX src/ /b/\n"
          "COPY --chmod=755 src/tool /c/tool\n")
    b, store = build(df, {"src/tool": "t\n", "src/sub/data": "d\n"})
    # context files are written 0644 here (umask 022); directories 0755
    a, bb, c = _layers(store)
    assert a["a/tool"][0].mode == 0o744 and a["a/sub"][0].mode == 0o755
    assert bb["b/tool"][0].mode == 0o444 and bb["b/sub"][0].mode == 0o555
    assert c["c/tool"][0].mode == 0o755


@root_only
def test_copy_exclude(env, build):
    df = ("FROM busybox\n"
          "COPY --exclude=*.md --exclude=build --exclude=**/*.tmp --exclude=!sub/keep.tmp "
          "app/ /app/\n"
          "COPY --exclude=*.txt hom* /mydir/\n")
    files = {"app/main.py": "m\n", "app/README.md": "r\n", "app/sub/x.tmp": "t\n",
             "app/sub/keep.tmp": "k\n", "app/sub/doc.md": "d\n", "app/build/out": "o\n",
             "homework.txt": "h\n", "home.py": "p\n"}
    b, store = build(df, files)
    app, mydir = _layers(store)
    assert sorted(k for k in app if k.startswith("app/")) == [
        "app/main.py", "app/sub", "app/sub/doc.md", "app/sub/keep.tmp"]
    assert sorted(k for k in mydir if k.startswith("mydir/")) == ["mydir/home.py"]
    # an excluded file is not in the key: changing it still hits
    b2, _ = build(df, {**files, "app/README.md": "changed\n", "homework.txt": "changed\n"})
    assert b2.cached == 2
    with pytest.raises(BuildError, match="Dockerfile:2: COPY --exclude"):
        build("FROM busybox\nCOPY --exclude=[ app/ /app/\n", files)


@root_only
def test_link_gives_the_same_layer(env, build):
    files = {"f.txt": "same\n", "d/g.txt": "g\n"}
    args = {"SOURCE_DATE_EPOCH": "1700000000"}
    _, store = build("FROM busybox\nCOPY f.txt d /x/\n", files, tag="nolink:1",
                     build_args=args)
    _, store = build("FROM busybox\nCOPY --link f.txt d /x/\n", files, tag="link:1",
                     build_args=args)
    assert _parts(store, "nolink:1")["chain"][-1] == _parts(store, "link:1")["chain"][-1]


# ------------------------------------------------------------------ units (no root)

@pytest.mark.parametrize("spec,old,is_dir,new", [
    ("755", 0o600, False, 0o755),
    ("u+x,g-w", 0o664, False, 0o744),
    ("a=rX", 0o640, False, 0o444),
    ("a=rX", 0o700, True, 0o555),
    ("a=rX", 0o744, False, 0o555),
    ("+x", 0o644, False, 0o755),
    ("go-rwx", 0o777, False, 0o700),
    ("u=rw,go=r", 0o777, False, 0o644),
    ("u+s,g+s,o+t", 0o755, True, 0o7755),
    ("o=", 0o4777, False, 0o4770),
    ("u-x+w", 0o500, False, 0o600),
])
def test_compile_mode(spec, old, is_dir, new):
    assert chmod.compile_mode(spec)(old, is_dir) == new


@pytest.mark.parametrize("bad", ["u+y", "999", "u+x,", "x+u", ""])
def test_compile_mode_refuses(bad):
    with pytest.raises(ValueError):
        chmod.compile_mode(bad)


@pytest.mark.parametrize("url,name", [
    ("http://h/a/b.tar.gz", "b.tar.gz"),
    ("https://h/a/b.txt?x=1#frag", "b.txt"),
    ("http://h/dir/", "dir"),
    ("http://h", "__unnamed__"),
    ("http://h/", "__unnamed__"),
    ("http://h/with%20space", "with space"),
])
def test_url_filename(url, name):
    assert fetch.url_filename(url) == name


def test_fetch_size_limit(tmp_path, http, monkeypatch):
    http.files["/big"] = (b"x" * 1000, None)
    monkeypatch.setattr(fetch, "MAX_BYTES", 100)
    with pytest.raises(fetch.FetchError, match="limit"):
        fetch.fetch(http.base + "/big", str(tmp_path))
    assert os.listdir(tmp_path) == []
