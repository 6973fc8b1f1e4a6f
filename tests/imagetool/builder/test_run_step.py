"""RUN in real pyrunc containers: heredocs, --mount (cache, bind, tmpfs, secret) and --network.

A busybox base image made with `imagetool import` into a private store per module. Each test
builds, then checks what the RUN saw (files it wrote) and what the layer holds (tar members):
mount points, cache contents, secrets and heredoc scripts must never be in it. Nothing is
left behind: mounts, the build's temp dirs and runtime containers are checked after each
test."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile

import pytest

from imagetool import bundle
from imagetool.builder import run_mounts
from imagetool.builder.executor import Builder, BuildError, BuildOptions
from imagetool.builder.executor import build as run_build
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import builds, busybox_store
from tests.imagetool.storehelp import imagetool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    with busybox_store("itrun-") as e:
        yield e


@pytest.fixture
def build(env):
    with builds(env, tag="test:latest") as run:
        yield run


def _layer(store: Store, name: str = "test:latest") -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The last layer of an image: name -> (member, content)."""
    parts = bundle.image_parts(store, f"docker.io/library/{name}")
    desc = parts["chain"][-1][0]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.rstrip("/")] = (m, f.read() if f else b"")
    return out


def _text(layer: dict, name: str) -> str:
    return layer[name][1].decode()


# -- heredocs ----------------------------------------------------------------------------------

def test_heredoc_forms(build):
    b, store = build(
        "FROM busybox\n"
        "ARG WHO=builder\n"
        "RUN <<EOF\n"
        "echo one > /one\n"
        "echo \"$WHO\" >> /one\n"
        "EOF\n"
        "RUN <<-EOT\n"
        "\techo tabbed > /two\n"
        "\tEOT\n"
        "RUN <<EOF sh\n"
        "echo piped $$ > /three\n"
        "EOF\n"
        "RUN cat <<A >/four && cat <<'B' >> /four\n"
        "first $WHO\n"
        "A\n"
        "second $WHO\n"
        "B\n"
        "RUN <<EOF\n"
        "#!/bin/sh\n"
        "echo \"script $0\" > /five\n"
        "EOF\n"
        "RUN 3<<X cat /dev/fd/3 > /six\n"
        "on fd three\n"
        "X\n")
    assert b.containers == 6
    parts = bundle.image_parts(store, "docker.io/library/test:latest")
    hist = [h["created_by"] for h in parts["config"]["history"] if not h.get("empty_layer")]
    assert hist[-2].startswith("RUN /bin/sh -c /dev/pipes/EOF")
    got = {}
    for desc, _ in parts["chain"][1:]:
        with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
            names = [m.name for m in tf.getmembers()]
            assert not [n for n in names if n.startswith(("dev", "tmp"))], names
            for m in tf.getmembers():
                got[m.name] = tf.extractfile(m).read().decode()  # type: ignore[union-attr]
    assert got["one"] == "one\nbuilder\n"          # the shell expands, with the ARG in env
    assert got["two"] == "tabbed\n"
    assert got["three"].startswith("piped ") and got["three"].strip() != "piped"
    assert got["four"] == "first builder\nsecond $WHO\n"
    assert got["five"] == "script /dev/pipes/EOF\n"
    assert got["six"] == "on fd three\n"


# -- cache mounts ------------------------------------------------------------------------------

def test_cache_mount_persists_and_stays_out_of_the_layer(env, build):
    df = ("FROM busybox\n"
          "ARG N=1\n"
          "RUN --mount=type=cache,target=/var/cache/app,id=app-test "
          "echo run$N >> /var/cache/app/log && cat /var/cache/app/log > /seen && "
          "ls -ld /var/cache/app | cut -c1-10 > /mode\n")
    b1, store = build(df, build_args={"N": "1"})
    layer = _layer(store)
    assert _text(layer, "seen") == "run1\n" and _text(layer, "mode") == "drwxr-xr-x\n"
    assert not [n for n in layer if n.startswith("var")], sorted(layer)
    b2, store = build(df, build_args={"N": "2"})
    assert b2.containers == 1
    assert _text(_layer(store), "seen") == "run1\nrun2\n"    # the cache outlived build 1
    data = os.path.join(env["root"], run_mounts.CACHE_MOUNTS)
    assert any(os.path.isfile(os.path.join(data, d, "data", "log")) for d in os.listdir(data))
    # the cache's content is not part of the key: same ARG -> a cache hit, no container
    b3, _ = build(df, build_args={"N": "2"})
    assert b3.containers == 0


def test_cache_mount_sharing_locked_mode_uid_and_relative_target(build):
    b, store = build("FROM busybox\nWORKDIR /w\n"
                     "RUN --mount=type=cache,target=c,sharing=locked,mode=0700,uid=1000,gid=1000 "
                     "stat -c '%a %u %g' /w/c > /out\n"
                     "RUN --mount=type=cache,target=/p,sharing=private,ro true\n")
    assert b.containers == 2
    layer = _layer(store)                 # `RUN ... ro true` changed nothing: no layer
    assert sorted(layer) == ["out"] and _text(layer, "out") == "700 1000 1000\n"
    parts = bundle.image_parts(store, "docker.io/library/test:latest")
    assert len(parts["chain"]) == 3       # the base, WORKDIR, the first RUN


# -- bind mounts -------------------------------------------------------------------------------

def test_bind_from_context_readonly_rw_and_cache_invalidation(env, build):
    df = ("FROM busybox\n"
          "RUN --mount=target=/src cat /src/data.txt > /copy && "
          "(touch /src/new 2>/dev/null && echo writable || echo readonly) > /ro && "
          "ls /src > /listing\n"
          "RUN --mount=type=bind,source=sub,target=/s,rw echo changed > /s/f.txt && "
          "cat /s/f.txt > /rw\n")
    files = {"data.txt": "v1\n", "sub/f.txt": "orig\n", "secret.key": "hidden\n",
             ".dockerignore": "secret.key\n"}
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    try:
        b1, store = build(df, files, ctx=ctx)
        parts = bundle.image_parts(store, "docker.io/library/test:latest")
        with tarfile.open(fileobj=io.BytesIO(
                store.read_blob(parts["chain"][-2][0]["digest"]))) as tf:
            assert sorted(m.name for m in tf.getmembers()) == ["copy", "listing", "ro"]
            assert tf.extractfile("copy").read() == b"v1\n"  # type: ignore[union-attr]
            assert tf.extractfile("ro").read() == b"readonly\n"  # type: ignore[union-attr]
            listing = tf.extractfile("listing").read().decode().split()  # type: ignore
            assert "secret.key" not in listing and "data.txt" in listing
        layer = _layer(store)
        assert _text(layer, "rw") == "changed\n" and "s" not in layer
        with open(os.path.join(ctx, "sub/f.txt")) as f:
            assert f.read() == "orig\n"                  # rw: the writes were thrown away
        b2, _ = build(df, files, ctx=ctx)
        assert b2.containers == 0
        files["data.txt"] = "v2\n"                       # a bind-mounted file changed
        b3, store = build(df, files, ctx=ctx)
        assert b3.containers == 2                        # first RUN misses, and the next
        parts = bundle.image_parts(store, "docker.io/library/test:latest")
        with tarfile.open(fileobj=io.BytesIO(
                store.read_blob(parts["chain"][-2][0]["digest"]))) as tf:
            assert tf.extractfile("copy").read() == b"v2\n"  # type: ignore[union-attr]
        # a file outside a RUN's bind source doesn't touch its key
        df2 = "FROM busybox\nRUN --mount=source=sub,target=/s cat /s/f.txt > /f\n"
        build(df2, files, ctx=ctx, tag="sub:1")
        files["data.txt"] = "v3\n"
        b4, _ = build(df2, files, ctx=ctx, tag="sub:1")
        assert b4.containers == 0
        files["sub/f.txt"] = "new\n"
        b5, store = build(df2, files, ctx=ctx, tag="sub:1")
        assert b5.containers == 1 and _text(_layer(store, "sub:1"), "f") == "new\n"
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def test_bind_and_cache_from_another_stage(build):
    df = ("FROM busybox AS tools\n"
          "RUN mkdir -p /opt/t && echo tool-v1 > /opt/t/version\n"
          "FROM busybox\n"
          "RUN --mount=from=tools,source=/opt/t,target=/t cat /t/version > /got\n"
          "RUN --mount=type=cache,from=tools,source=/opt/t,target=/c,id=seeded "
          "cat /c/version > /seeded\n")
    b, store = build(df)
    assert b.containers == 3
    layer = _layer(store)
    assert _text(layer, "seeded") == "tool-v1\n" and "c" not in layer
    parts = bundle.image_parts(store, "docker.io/library/test:latest")
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(parts["chain"][-2][0]["digest"]))) as tf:
        assert [m.name for m in tf.getmembers()] == ["got"]
        assert tf.extractfile("got").read() == b"tool-v1\n"  # type: ignore[union-attr]
    b2, _ = build(df.replace("tool-v1", "tool-v2"))
    assert b2.containers == 3                            # the stage changed: its key chains


def test_bind_from_an_image_in_the_store(build):
    b, store = build("FROM busybox\n"
                     "RUN --mount=from=busybox:latest,source=/etc,target=/img "
                     "cat /img/group | head -n1 > /g\n")
    assert _text(_layer(store), "g") == "root:x:0:\n"


def test_failures_with_mounts_clean_up(env, build):
    path = os.path.join(env["dir"], "s.txt")
    with open(path, "w") as f:
        f.write("x")
    secrets = {"s": run_mounts.parse_secret(f"id=s,src={path}")}
    with pytest.raises(BuildError, match=r"^Dockerfile:3: RUN: process .* exit code: 4"):
        build("FROM busybox AS a\nFROM busybox\n"
              "RUN --mount=type=cache,target=/c --mount=target=/ctx,rw "
              "--mount=type=tmpfs,target=/t --mount=type=secret,id=s "
              "--mount=from=a,source=/etc,target=/e,rw exit 4\n", secrets=secrets)
    with pytest.raises(BuildError, match=r"^Dockerfile:3: RUN --mount: .*/nope not found"):
        build("FROM busybox AS a\nFROM busybox\n"
              "RUN --mount=type=tmpfs,target=/t --mount=from=a,source=/nope,target=/n true\n")
    # the fixture checks that no mount, temp dir or container is left


# -- tmpfs -------------------------------------------------------------------------------------

def test_tmpfs_mount(build):
    b, store = build("FROM busybox\n"
                     "RUN --mount=type=tmpfs,target=/scratch/t,size=1m "
                     "echo x > /scratch/t/f && grep ' /scratch/t ' /proc/mounts > /m && "
                     "echo kept > /kept\n")
    layer = _layer(store)
    assert sorted(layer) == ["kept", "m"]
    assert "tmpfs" in _text(layer, "m") and "size=1024k" in _text(layer, "m")


# -- secrets -----------------------------------------------------------------------------------

def test_secret_mounts(env, build, monkeypatch):
    path = os.path.join(env["dir"], "token.txt")
    with open(path, "w") as f:
        f.write("s3cr3t-value")
    monkeypatch.setenv("IT_TOKEN", "env-s3cr3t")
    secrets = {"tok": run_mounts.parse_secret(f"id=tok,src={path}"),
               "envtok": run_mounts.parse_secret("id=envtok,env=IT_TOKEN")}
    b, store = build("FROM busybox\n"
                     "RUN --mount=type=secret,id=tok,required "
                     "--mount=type=secret,id=envtok,env=MYTOK,target=/etc/tok "
                     "--mount=type=secret,id=absent "
                     "cat /run/secrets/tok | wc -c > /len && stat -c %a /run/secrets/tok > /mode "
                     "&& echo ${#MYTOK} > /envlen && wc -c < /etc/tok > /filelen && "
                     "(test -e /run/secrets/absent && echo yes || echo no) > /absent\n",
                     secrets=secrets)
    layer = _layer(store)
    assert sorted(layer) == ["absent", "envlen", "filelen", "len", "mode"], sorted(layer)
    assert _text(layer, "len").strip() == "12" and _text(layer, "mode") == "400\n"
    assert _text(layer, "envlen") == "10\n" and _text(layer, "filelen").strip() == "10"
    assert _text(layer, "absent") == "no\n"
    blob = b"".join(store.read_blob(d["digest"]) for d, _ in
                    bundle.image_parts(store, "docker.io/library/test:latest")["chain"])
    config = str(bundle.image_parts(store, "docker.io/library/test:latest")["config"])
    assert b"s3cr3t" not in blob and "s3cr3t" not in config
    # the secret's value is not in the key: a changed secret still hits the cache
    with open(path, "w") as f:
        f.write("other")
    b2, _ = build("FROM busybox\n"
                  "RUN --mount=type=secret,id=tok,required "
                  "--mount=type=secret,id=envtok,env=MYTOK,target=/etc/tok "
                  "--mount=type=secret,id=absent "
                  "cat /run/secrets/tok | wc -c > /len && stat -c %a /run/secrets/tok > /mode "
                  "&& echo ${#MYTOK} > /envlen && wc -c < /etc/tok > /filelen && "
                  "(test -e /run/secrets/absent && echo yes || echo no) > /absent\n",
                  secrets=secrets)
    assert b2.containers == 0


def test_missing_required_secret_names_line_and_id(env):
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN true\nRUN --mount=type=secret,id=npmrc,required cat x\n")
    b = Builder(Store(env["root"]), BuildOptions(context=ctx, tags=["x:1"]), out=lambda s: None)
    with pytest.raises(BuildError) as ei:
        b.build()
    assert str(ei.value).startswith("Dockerfile:3: ") and "'npmrc'" in str(ei.value)
    assert "required" in str(ei.value) and b.containers == 0
    shutil.rmtree(ctx)


@pytest.mark.parametrize("text, message", [
    ("src=/x", "missing id="),
    ("id=a,what=b", "unexpected key 'what'"),
    ("id=a,src=/nonexistent/file", "not a readable file"),
    ("id=a,env=IT_SURELY_UNSET_VAR", "IT_SURELY_UNSET_VAR is not set"),
    ("id=a,type=ssh", "unsupported type"),
    ("id", "is not key=value"),
])
def test_secret_flag_errors_are_one_line(env, text, message):
    with pytest.raises(ValueError, match=message):
        run_mounts.parse_secret(text)
    p = imagetool(env["root"], "build", "-t", "x:1", "--secret", text, env["dir"], check=False)
    err = p.stderr.decode()
    assert p.returncode == 2 and message in err and err.count("\n") == 1, err


def test_parse_secret_defaults(env, monkeypatch):
    monkeypatch.setenv("IT_SEC", "v")
    assert run_mounts.parse_secret("id=IT_SEC") == run_mounts.Secret(id="IT_SEC", env="IT_SEC")
    assert run_mounts.parse_secret("id=a,type=env,src=IT_SEC").env == "IT_SEC"
    path = os.path.join(env["dir"], "f")
    open(path, "w").close()
    assert run_mounts.parse_secret(f"id=a,source={path}").src == path


# -- network -----------------------------------------------------------------------------------

def _host_ifaces() -> set[str]:
    with open("/proc/net/dev") as f:
        return {line.split(":")[0].strip() for line in f.readlines()[2:]}


def test_network_none_and_default(build):
    b, store = build("FROM busybox\n"
                     "RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 > /none && "
                     "ip link show lo | grep -q UP && echo up > /lo\n"
                     "RUN tail -n +3 /proc/net/dev | cut -d: -f1 > /default\n"
                     "RUN --network=host tail -n +3 /proc/net/dev | cut -d: -f1 > /host\n")
    parts = bundle.image_parts(store, "docker.io/library/test:latest")
    got = {}
    for desc, _ in parts["chain"][1:]:
        with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
            for m in tf.getmembers():
                got[m.name] = {x.strip() for x in
                               tf.extractfile(m).read().decode().split()}  # type: ignore
    assert got["none"] == {"lo"} and got["lo"] == {"up"}
    host = _host_ifaces()
    assert got["default"] == host and got["host"] == host
    assert len(host) > 1


def test_build_network_none_is_the_default_for_runs_that_set_none(build):
    """`build --network none` (BuildOptions.network): a RUN without --network, or with
    --network=default, gets only loopback; RUN --network=host still gets the host's; the
    cache keeps the two builds apart."""
    df = ("FROM busybox\n"
          "RUN tail -n +3 /proc/net/dev | cut -d: -f1 > /plain\n"
          "RUN --network=default tail -n +3 /proc/net/dev | cut -d: -f1 > /dflt\n"
          "RUN --network=host tail -n +3 /proc/net/dev | cut -d: -f1 > /host\n")
    b, store = build(df, tag="netnone:1", network="none")
    assert b.containers == 3
    got = {}
    for desc, _ in bundle.image_parts(store, "docker.io/library/netnone:1")["chain"][1:]:
        with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
            for m in tf.getmembers():
                got[m.name] = set(tf.extractfile(m).read().decode().split())  # type: ignore
    assert got["plain"] == {"lo"} and got["dflt"] == {"lo"}
    assert got["host"] == _host_ifaces()
    # the same Dockerfile with the default network is another build: the first two RUNs get
    # the host's network now, and the third runs again on their new layers
    b2, _ = build(df, tag="netnone:2")
    assert b2.containers == 3 and b2.cached == 0
    b3, _ = build(df, tag="netnone:3", network="none")
    assert b3.containers == 0 and b3.cached == 3


# -- errors before anything runs ---------------------------------------------------------------

@pytest.mark.parametrize("dockerfile, files, line, text", [
    ("FROM busybox\nRUN true\nRUN --mount=type=bind,target=/x,mode=0600 true\n", {}, 3,
     "does not take mode="),
    ("FROM busybox\nRUN true\nRUN --mount=type=tmpfs,target=/x,size=lots true\n", {}, 3,
     "invalid size"),
    ("FROM busybox\nRUN true\nRUN --mount=type=cache,target=/x,required true\n", {}, 3,
     "does not take required"),
    ("FROM busybox\nRUN true\nRUN --mount=type=bind,source=nope.txt,target=/x true\n", {}, 3,
     "nope.txt: not found"),
    ("FROM busybox\nRUN true\nRUN --mount=type=bind,source=k,target=/x true\n",
     {"k": "x", ".dockerignore": "k\n"}, 3, "excluded by .dockerignore"),
    ("FROM busybox\nRUN true\nRUN --mount=type=ssh true\n", {}, 3, "type=ssh is not supported"),
    ("FROM busybox\nARG T=/\nRUN true\nRUN --mount=type=tmpfs,target=$T true\n", {}, 4,
     "invalid mount target"),
    ("FROM busybox\nARG S=sometimes\nRUN --mount=type=cache,target=/c,sharing=$S true\n", {}, 3,
     "sharing"),
])
def test_bad_mounts_fail_before_anything_runs(env, dockerfile, files, line, text):
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    for name, data in {"Dockerfile": dockerfile, **files}.items():
        with open(os.path.join(ctx, name), "w") as f:
            f.write(data)
    store = Store(env["root"])
    before = len(os.listdir(os.path.join(env["root"], "build-cache")))
    with pytest.raises(BuildError) as ei:
        run_build(store, BuildOptions(context=ctx, tags=["x:1"]), out=lambda s: None)
    assert str(ei.value).startswith(f"Dockerfile:{line}: ") and text in str(ei.value), \
        str(ei.value)
    assert len(os.listdir(os.path.join(env["root"], "build-cache"))) == before  # ran nothing
    shutil.rmtree(ctx)
