"""The build plan: stage graph, --target pruning, ARG scoping, platform and proxy args."""

import json
import textwrap

import pytest

from imagetool.builder import dockerfile as d
from imagetool.builder.dockerfile import DockerfileError, parse
from imagetool.builder.plan import Platform, plan

AMD64 = "linux/amd64"


def mk(text: str, **kw):
    df = parse(textwrap.dedent(text).lstrip("\n"))
    kw.setdefault("build_platform", AMD64)
    return plan(df, **kw)


def fails(text: str, **kw) -> DockerfileError:
    with pytest.raises(DockerfileError) as ei:
        mk(text, **kw)
    return ei.value


MULTI = """
    FROM golang:1.22 AS deps
    RUN go mod download
    FROM deps AS build
    RUN go build -o /app
    FROM node:20 AS web
    RUN npm ci
    FROM alpine:3.19 AS test
    COPY --from=build /app /app
    RUN --mount=type=bind,from=web,source=/dist,target=/dist /app test
    FROM scratch
    COPY --from=1 /app /app
"""


def test_single_stage_defaults():
    p = mk("""
        FROM node:18-alpine
        WORKDIR /app
        CMD ["node", "src/index.js"]
    """)
    assert p.target == 0 and p.order == [0]
    st = p.stages[0]
    assert st.base.kind == "image" and st.base.ref == "docker.io/library/node:18-alpine"
    assert p.images() == ["docker.io/library/node:18-alpine"]
    assert str(p.build_platform) == str(p.target_platform) == AMD64


def test_target_prunes_to_what_it_needs():
    p = mk(MULTI)
    assert p.target == 4 and p.order == [0, 1, 4]
    assert [s.needed for s in p.stages] == [True, True, False, False, True]
    assert p.stages[1].base.kind == "stage" and p.stages[1].base.stage == 0
    assert p.stages[4].base.kind == "scratch" and p.stages[4].deps == [1]
    assert p.images() == ["docker.io/library/golang:1.22"]

    t = mk(MULTI, target="TEST")
    assert t.order == [0, 1, 2, 3]
    assert t.stages[3].deps == [1, 2]
    assert [s.via for s in t.stages[3].sources] == ["COPY --from", "RUN --mount from"]
    assert t.images() == ["docker.io/library/golang:1.22", "docker.io/library/node:20",
                          "docker.io/library/alpine:3.19"]

    w = mk(MULTI, target="web")
    assert w.order == [2]


def test_unknown_target():
    e = fails(MULTI, target="buidl")
    assert "target stage 'buidl' could not be found" in e.message
    assert "did you mean 'build'" in e.message


def test_copy_from_resolution():
    p = mk("""
        FROM alpine AS a
        FROM alpine
        COPY --from=A /x /x
        COPY --from=0 /y /y
        COPY --from=nginx:1.25 /etc/nginx/nginx.conf /etc/
        COPY --from=composer /usr/bin/composer /usr/bin/
        COPY --from=ghcr.io/org/tool@sha256:""" + "a" * 64 + """ /t /t
    """)
    srcs = p.stages[1].sources
    assert [(s.kind, s.ref) for s in srcs] == [
        ("stage", "0"), ("stage", "0"), ("image", "docker.io/library/nginx:1.25"),
        ("image", "docker.io/library/composer:latest"),
        ("image", "ghcr.io/org/tool@sha256:" + "a" * 64)]
    cp = p.stages[1].instructions[2]
    assert p.stages[1].source_for(cp)[0].ref == "docker.io/library/nginx:1.25"


@pytest.mark.parametrize("line, message", [
    ("COPY --from=5 /x /x", "invalid stage index 5"),
    ("COPY --from=Not_A_Ref /x /x", "no stage named 'Not_A_Ref'"),
    ("COPY --from=biulder /x /x", "did you mean 'builder'?"),
    ("RUN --mount=from=biulder,target=/m true", "did you mean 'builder'?"),
    ("COPY --from=second /x /x", "circular dependency detected on stage: second"),
])
def test_copy_from_errors(line, message):
    e = fails(f"""
        FROM alpine AS builder
        FROM alpine AS second
        {line}
    """)
    assert e.line == 3 and message in e.message, e.message
    assert str(e).startswith("Dockerfile:3: ")


def test_typo_escape_hatch_with_a_tag():
    p = mk("""
        FROM alpine AS builder
        FROM alpine
        COPY --from=biulder:latest /x /x
    """)
    assert p.stages[1].sources[0].ref == "docker.io/library/biulder:latest"


def test_circular_dependency():
    e = fails("""
        FROM alpine AS a
        COPY --from=c /x /x
        FROM a AS b
        FROM alpine AS c
        COPY --from=b /y /y
    """)
    assert "circular dependency detected on stage" in e.message
    assert "a -> c -> b -> a" in e.message or "c -> b -> a -> c" in e.message
    assert e.line in (2, 3, 5)   # the line of the edge that closes the cycle


def test_from_later_stage_is_an_image_and_bad_refs_fail_early():
    p = mk("""
        FROM later AS first
        FROM alpine AS later
    """)
    assert p.stages[0].base.kind == "image"
    assert any("defined later" in w for w in p.warnings)
    e = fails("FROM Alpine:Latest\n")
    assert e.line == 1 and "FROM Alpine:Latest" in e.message
    e = fails("ARG X\nFROM ${X}\n")
    assert e.line == 2 and "should not be blank" in e.message
    e = fails("FROM --platform=linux alpine\nFROM --platform=a/b/c/d alpine\n")
    assert e.line == 2 and "invalid platform" in e.message


def test_global_args_in_from_and_overrides():
    text = """
        ARG REGISTRY=docker.io
        ARG IMAGE=${REGISTRY}/library/python
        ARG VERSION=3.12
        FROM ${IMAGE}:${VERSION}-slim AS base
        RUN echo $VERSION
    """
    p = mk(text)
    assert p.stages[0].base.ref == "docker.io/library/python:3.12-slim"
    assert p.global_args["IMAGE"] == "docker.io/library/python"
    p = mk(text, build_args={"VERSION": "3.11", "REGISTRY": "ghcr.io"})
    assert p.stages[0].base.ref == "ghcr.io/library/python:3.11-slim"
    # a global ARG is not in scope inside the stage
    (step,) = p.walk(0)
    assert "VERSION" not in step.env and step.args == {}


def test_stage_arg_scoping():
    p = mk("""
        ARG VERSION=1.0
        ARG ONLYGLOBAL=g
        FROM alpine AS one
        ARG VERSION
        ARG OTHER=${VERSION}-x
        ARG DECLARED_ONLY
        RUN echo $VERSION $OTHER
        ENV VERSION=from-env
        RUN echo $VERSION
        FROM alpine AS two
        ARG VERSION=2.0
        RUN echo $VERSION
    """, target="two")
    s = list(p.walk("one"))
    run1, run2 = s[3], s[5]
    assert run1.env == {"VERSION": "1.0", "OTHER": "1.0-x"}
    assert run1.args == {"VERSION": "1.0", "OTHER": "1.0-x"}
    assert [a.default for a in s[2].expanded.args] == [None]
    assert run2.env["VERSION"] == "from-env" and run2.image_env == {"VERSION": "from-env"}
    t = list(p.walk("two"))
    assert t[1].env == {"VERSION": "2.0"}
    o = mk("ARG VERSION=1\nFROM alpine\nARG VERSION=2\nRUN x\n", build_args={"VERSION": "cli"})
    assert list(o.walk(0))[1].env == {"VERSION": "cli"}


def test_build_arg_values_are_not_expanded():
    p = mk("FROM alpine\nARG X\nRUN echo\n", build_args={"X": "$HOME ${Y}"})
    assert list(p.walk(0, {"HOME": "/root"}))[1].args == {"X": "$HOME ${Y}"}


def test_walk_expands_with_base_image_env_and_prelude():
    p = mk("""
        FROM python:3.12
        ARG APP=app
        WORKDIR $HOME/$APP
        ENV PATH=$HOME/.local/bin:$PATH
        COPY . .
        RUN pip install .
    """)
    base_env = ["PATH=/usr/local/bin:/usr/bin", "HOME=/root"]
    prelude = d.parse_instructions("LABEL from.onbuild=$HOME", "base")
    steps = list(p.walk(0, base_env, prelude=prelude))
    assert [s.instruction.NAME for s in steps] == ["LABEL", "ARG", "WORKDIR", "ENV", "COPY",
                                                    "RUN"]
    assert steps[0].expanded.pairs[0].value == "/root"
    assert steps[2].expanded.path == "/root/app"
    assert steps[3].expanded.pairs[0].value == "/root/.local/bin:/usr/local/bin:/usr/bin"
    run = steps[5]
    assert run.image_env == {"PATH": "/root/.local/bin:/usr/local/bin:/usr/bin",
                             "HOME": "/root"}
    assert run.env == {**run.image_env, "APP": "app"}
    assert run.args == {"APP": "app"}


def test_platform_args():
    text = """
        FROM --platform=$BUILDPLATFORM golang AS build
        ARG TARGETOS TARGETARCH
        RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build
        FROM alpine
        RUN echo $TARGETARCH
    """
    p = mk(text, build_platform="linux/amd64", target_platform="linux/arm/v7")
    assert p.stages[0].platform == "linux/amd64"
    assert p.stages[1].platform is None
    assert list(p.walk(0))[1].env == {"TARGETOS": "linux", "TARGETARCH": "arm"}
    assert list(p.walk(1))[0].env == {}
    assert p.global_args["TARGETVARIANT"] == "v7"
    assert p.global_args["BUILDPLATFORM"] == "linux/amd64"
    assert str(Platform.parse("linux/aarch64")) == "linux/arm64"
    assert str(Platform.parse("linux/arm64/v8")) == "linux/arm64"
    with pytest.raises(ValueError):
        Platform.parse("linux//amd64")
    assert str(Platform.parse("linux/arm")) == "linux/arm/v7"


def test_proxy_args_and_unused_warning():
    p = mk("""
        FROM alpine AS unused
        ARG ONLY_IN_UNUSED
        FROM alpine
        ARG USED
        RUN apk add curl
    """, build_args={"HTTP_PROXY": "http://proxy:3128", "USED": "1", "ONLY_IN_UNUSED": "x",
                     "TYPO": "y", "TARGETARCH": "ignored-here"})
    run = list(p.walk(1))[1]
    assert run.env == {"USED": "1", "HTTP_PROXY": "http://proxy:3128"}
    assert run.args == {"USED": "1"}
    assert p.warnings == ["one or more build-args ['ONLY_IN_UNUSED', 'TYPO'] were not "
                          "consumed (no ARG of a built stage declares them)"]
    # a global ARG counts as consuming
    q = mk("ARG TYPO\nFROM alpine\n", build_args={"TYPO": "1"})
    assert q.warnings == []


def test_plan_is_json_serialisable():
    p = mk(MULTI, target="test", build_args={"A": "1"})
    data = json.loads(json.dumps(p.to_dict()))
    assert data["order"] == [0, 1, 2, 3] and data["target"] == 3
    assert data["stages"][3]["sources"][0]["ref"] == "1"
    assert d.Dockerfile.from_dict(data["dockerfile"]) == p.dockerfile


def test_parse_warnings_carry_into_plan():
    p = mk("FROM alpine\nENV a b\n")
    assert any("legacy" in w for w in p.warnings)


def test_check_context_before_anything_runs(tmp_path):
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "secret.env").write_text("x")
    text = """
        FROM alpine AS unused
        COPY not-needed-stage-file /x
        FROM node
        COPY package.json ./
        COPY --from=busybox:1 /x /x
        COPY $FROM_ARG /y
        ADD https://example.com/x.tgz /z
        COPY missing.txt ./
    """
    p = mk(text)
    with pytest.raises(DockerfileError) as ei:
        p.check_context(tmp_path)
    assert str(ei.value) == ("Dockerfile:8: COPY failed: missing.txt: not found in the build "
                             "context")
    (tmp_path / "missing.txt").write_text("now here")
    p.check_context(tmp_path)
    from imagetool.builder.dockerignore import DockerIgnore
    with pytest.raises(DockerfileError) as ei:
        p.check_context(tmp_path, DockerIgnore.parse("*.txt\n"))
    assert "excluded by .dockerignore" in ei.value.message and ei.value.line == 8
    with pytest.raises(DockerfileError):
        p.check_context(None)
