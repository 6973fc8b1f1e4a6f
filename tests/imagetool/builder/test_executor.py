"""The builder on real containers: a busybox base image made with `imagetool import`, a
private store per module, RUN steps in pyrunc containers over overlay mounts. Checks the
layers (whiteouts, opaque dirs), the config and history, multi-stage COPY --from, the cache
(hit: no container; miss after a context change), SOURCE_DATE_EPOCH reproducibility, and
that errors name Dockerfile:LINE before anything runs. Nothing is left behind: the build's
temp dirs, mounts and runtime containers are checked after each test."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time

import pytest

from imagetool import bundle
from imagetool.builder.executor import Builder, BuildError, BuildOptions
from imagetool.store import Store
from tests.imagetool.builder.buildhelp import builds, busybox_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    with busybox_store("itbuild-") as e:
        yield e


@pytest.fixture
def build(env):
    with builds(env, tag="test:latest") as run:
        yield run


def _parts(store: Store, name: str = "test:latest") -> dict:
    return bundle.image_parts(store, f"docker.io/library/{name}")


def _members(store: Store, desc: dict) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(desc["digest"]))) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


def _unpacked(env, store: Store, name: str = "test:latest") -> str:
    d = tempfile.mkdtemp(prefix="unp-", dir=env["dir"])
    bundle.unpack(store, f"docker.io/library/{name}", os.path.join(d, "b"), cmd=["true"])
    return os.path.join(d, "b", "rootfs")


def test_run_deletion_is_a_whiteout(env, build):
    b, store = build("FROM busybox\n"
                     "RUN rm /etc/group && rm -rf /home && mkdir /home && echo x > /home/new\n")
    assert b.containers == 1
    parts = _parts(store)
    assert len(parts["chain"]) == 2
    members = _members(store, parts["chain"][-1][0])
    assert "etc/.wh.group" in members
    assert "home/.wh..wh..opq" in members and "home/new" in members
    rootfs = _unpacked(env, store)
    assert not os.path.exists(os.path.join(rootfs, "etc/group"))
    assert os.path.exists(os.path.join(rootfs, "etc/passwd"))
    assert os.listdir(os.path.join(rootfs, "home")) == ["new"]


def test_multi_stage_copy_from_and_target(env, build):
    df = ("FROM busybox AS builder\n"
          "RUN mkdir /out && echo built > /out/a.txt && echo two > /out/b.txt\n"
          "FROM busybox AS unused\n"
          "RUN exit 7\n"
          "FROM busybox\n"
          "COPY --from=builder /out/ /app/\n"
          "COPY --from=0 /out/a.txt /single.txt\n"
          "RUN cat /app/a.txt /app/b.txt /single.txt > /all.txt\n")
    b, store = build(df)
    assert b.containers == 2   # the unused stage never ran
    rootfs = _unpacked(env, store)
    with open(os.path.join(rootfs, "all.txt")) as f:
        assert f.read() == "built\ntwo\nbuilt\n"
    b, store = build(df, tag="builder:latest", target="builder")
    assert len(_parts(store, "builder:latest")["chain"]) == 2


def test_cache_hit_then_miss_after_a_change(env, build):
    df = ("FROM busybox\nWORKDIR /app\nCOPY data.txt ./\nRUN wc -c data.txt > size.txt\n"
          'CMD ["cat", "/app/size.txt"]\n')
    b1, store = build(df, {"data.txt": "hello\n"}, tag="cache:latest")
    assert b1.containers == 1
    b2, _ = build(df, {"data.txt": "hello\n"}, tag="cache:latest")
    assert b2.containers == 0 and b2.cached == 3
    assert b2.result.manifest["digest"] == b1.result.manifest["digest"]
    b3, _ = build(df, {"data.txt": "hello, changed\n"}, tag="cache:latest")
    assert b3.containers == 1 and b3.cached == 1   # WORKDIR hit; COPY and RUN miss
    with open(os.path.join(_unpacked(env, store, "cache:latest"), "app/size.txt")) as f:
        assert f.read().split()[0] == "15"
    b4, _ = build(df, {"data.txt": "hello, changed\n"}, tag="cache:latest", no_cache=True)
    assert b4.containers == 1 and b4.cached == 0


def test_config_history_env_user_args(env, build):
    df = ("FROM busybox\n"
          "ARG VERSION=1.0\n"
          "ENV APP_HOME=/opt/app PATH=/opt/app/bin:/bin\n"
          "LABEL org.example.version=$VERSION team=\"build team\"\n"
          "WORKDIR $APP_HOME\n"
          "USER user\n"
          "RUN echo \"$VERSION $APP_HOME $(id -u) $(pwd)\" > /tmp/info\n"
          "USER root\n"
          "EXPOSE 80 53/udp\n"
          "VOLUME /data\n"
          "STOPSIGNAL SIGQUIT\n"
          "HEALTHCHECK --interval=5s CMD true\n"
          "ONBUILD RUN echo triggered\n"
          "SHELL [\"/bin/sh\", \"-ec\"]\n"
          "ENTRYPOINT [\"/bin/sh\"]\n"
          "CMD echo hi\n")
    b, store = build(df, build_args={"VERSION": "2.5"})
    conf = _parts(store)["config"]
    c = conf["config"]
    assert "APP_HOME=/opt/app" in c["Env"] and not any(e.startswith("VERSION=") for e in c["Env"])
    assert c["Labels"] == {"org.example.version": "2.5", "team": "build team"}
    assert c["WorkingDir"] == "/opt/app" and c["User"] == "root"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGQUIT"
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert c["Healthcheck"]["Interval"] == 5_000_000_000
    assert c["OnBuild"] == ["RUN echo triggered"]
    assert c["Entrypoint"] == ["/bin/sh"] and c["Cmd"] == ["/bin/sh", "-ec", "echo hi"]
    assert c["Shell"] == ["/bin/sh", "-ec"]
    hist = conf["history"][1:]
    assert len(hist) == 15
    assert [h.get("empty_layer", False) for h in hist].count(False) == 2  # WORKDIR, RUN
    assert hist[0]["created_by"] == "/bin/sh -c #(nop) ARG VERSION=2.5"
    assert hist[5]["created_by"].startswith("RUN /bin/sh -c echo")
    with open(os.path.join(_unpacked(env, store), "tmp/info")) as f:
        assert f.read() == "2.5 /opt/app 1000 /opt/app\n"
    # ONBUILD triggers run in a build FROM this image, and are not inherited
    b, store = build("FROM test:latest\nRUN echo child > /child\n", tag="child:latest")
    assert b.containers == 2
    assert "OnBuild" not in _parts(store, "child:latest")["config"]["config"]


def test_copy_chown_chmod_dockerignore_and_add_tar(env, build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"from the tar\n"
        ti = tarfile.TarInfo("pkg/inside.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    df = ("FROM busybox\n"
          "COPY --chown=user:user --chmod=0600 secret.conf /etc/app.conf\n"
          "COPY --chown=1234 src /src\n"
          "COPY . /ctx/\n"
          "ADD bundle.tar.gz /opt/\n"
          "COPY *.txt /texts/\n")
    files = {"secret.conf": "k=v\n", "src/a.py": "print(1)\n", "src/sub/b.py": "x\n",
             "notes.txt": "n\n", "big.log": "ignored\n", "bundle.tar.gz": buf.getvalue(),
             ".dockerignore": "*.log\n"}
    b, store = build(df, files)
    rootfs = _unpacked(env, store)
    st = os.lstat(os.path.join(rootfs, "etc/app.conf"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o600)
    st = os.lstat(os.path.join(rootfs, "src/sub/b.py"))
    assert (st.st_uid, st.st_gid) == (1234, 1234)
    assert os.path.exists(os.path.join(rootfs, "ctx/secret.conf"))
    assert not os.path.exists(os.path.join(rootfs, "ctx/big.log"))
    with open(os.path.join(rootfs, "opt/pkg/inside.txt")) as f:
        assert f.read() == "from the tar\n"
    assert os.listdir(os.path.join(rootfs, "texts")) == ["notes.txt"]


def test_source_date_epoch_gives_the_same_digest(env, build):
    # The RUN writes no clock reading into a file (`date > /stamp` did: two builds a second
    # boundary apart gave other bytes, the flake under load); it makes new mtimes, which the
    # epoch must clamp, and the second build starts in another second so they would differ.
    df = ("FROM busybox\nCOPY f.txt /f.txt\n"
          "RUN touch /stamp && mkdir -p /new/dir && echo more >> /f.txt\n")
    args = {"SOURCE_DATE_EPOCH": "1700000000"}
    b1, store = build(df, {"f.txt": "x\n"}, tag="repro:1", build_args=args, no_cache=True)
    time.sleep(1 - time.time() % 1 + 0.01)
    b2, _ = build(df, {"f.txt": "x\n"}, tag="repro:2", build_args=args, no_cache=True)
    assert b1.containers == b2.containers == 1
    assert b1.result.manifest["digest"] == b2.result.manifest["digest"]
    parts = _parts(store, "repro:1")
    assert parts["config"]["created"] == "2023-11-14T22:13:20Z"
    for m in _members(store, parts["chain"][-1][0]).values():
        assert m.mtime <= 1700000000


@pytest.mark.parametrize("dockerfile,files,line,text", [
    ("FROM busybox\nRUN true\nCOPY missing.txt /\n", {}, 3, "missing.txt: not found"),
    ("FROM busybox\nRUN true\nRUN --security=insecure true\n", {}, 3, "not supported yet"),
    ("FROM busybox\nRUN --mount=type=ssh true\n", {}, 2, "not supported yet"),
    ("FROM nosuchimage:1\nRUN true\n", {}, 1, "not in the store"),
    ("FROM busybox\nRUN true\nCOPY --from=nope /x /x\n", {}, 3, "not in the store"),
    ("FROM busybox\nRUN true\nBOGUS x\n", {}, 3, ""),
])
def test_errors_name_the_line_before_anything_runs(env, dockerfile, files, line, text):
    ctx = tempfile.mkdtemp(prefix="ctx-", dir=env["dir"])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    # pull="never": a missing image must not send the build to Docker Hub (build_cli's
    # test pulls a missing base from a local registry)
    b = Builder(Store(env["root"]), BuildOptions(context=ctx, tags=["err:1"], pull="never"),
                out=lambda s: None)
    with pytest.raises((BuildError, ValueError)) as ei:
        b.build()
    assert f"Dockerfile:{line}" in str(ei.value) and text in str(ei.value)
    assert b.containers == 0 and b.steps == 0


def test_failing_run_reports_line_and_exit_code(env, build):
    with pytest.raises(BuildError) as ei:
        build("FROM busybox\nRUN echo ok\nRUN exit 3\n", tag="fail:1")
    assert "Dockerfile:3" in str(ei.value) and "exit code: 3" in str(ei.value)


def test_scratch_copy_from_image_and_exec_form_run(env, build):
    b, store = build("FROM scratch\n"
                     "COPY --from=busybox:latest /bin/busybox /bin/busybox\n"
                     'RUN ["/bin/busybox", "sh", "-c", "echo $0 > /made", "exec-form"]\n'
                     'ENTRYPOINT ["/bin/busybox"]\n', tag="tiny:latest")
    assert b.containers == 1
    parts = _parts(store, "tiny:latest")
    assert len(parts["chain"]) == 2
    assert parts["config"]["config"]["Entrypoint"] == ["/bin/busybox"]
    rootfs = _unpacked(env, store, "tiny:latest")
    assert sorted(os.listdir(rootfs)) == ["bin", "made"]   # no /proc, /dev, /sys stubs
    with open(os.path.join(rootfs, "made")) as f:
        assert f.read() == "exec-form\n"
