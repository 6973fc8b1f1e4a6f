"""The Dockerfile parser, continued: heredocs, ONBUILD, structure errors, serialisation."""

import json

import pytest

from imagetool.builder import dockerfile as d
from imagetool.builder.dockerfile import parse
from tests.imagetool.builder.dockerfile_help import P, err

# ------------------------------------------------------------------ heredocs

def test_run_heredoc():
    df = P("""
        FROM alpine
        RUN <<EOF
        apk add curl
        echo "$HOME"
        EOF
        RUN cat
    """)
    run, nxt = df.stages[0].instructions
    assert (run.line, run.end_line) == (2, 5) and nxt.line == 6
    h = run.heredocs[0]
    assert (h.name, h.expand, h.chomp) == ("EOF", True, False)
    assert h.content == 'apk add curl\necho "$HOME"\n'
    argv, files = run.argv(["/bin/sh", "-c"])
    assert argv == ["/bin/sh", "-c", h.content] and files == {}


def test_heredoc_chomp_quoted_and_several():
    text = ("FROM alpine\n"
            "COPY <<-\"EOT\" <<'B' /etc/\n"
            "\tline $X\n"
            "\t\tindented\n"
            "\tEOT\n"
            "bee\n"
            "B\n"
            "RUN 3<<X cat /dev/fd/3 > /out\n"
            "three\n"
            "X\n")
    df = parse(text)
    cp, run = df.stages[0].instructions
    a, b = cp.heredocs
    assert (a.name, a.chomp, a.expand) == ("EOT", True, False)
    assert a.content == "\tline $X\n\t\tindented\n" and a.body() == "line $X\nindented\n"
    assert (b.name, b.content, b.expand) == ("B", "bee\n", False)
    assert cp.sources == [] and cp.dest == "/etc/"
    assert (cp.line, cp.end_line) == (2, 7)
    assert run.heredocs[0].fd == 3 and run.line == 8
    argv, _ = run.argv(["/bin/sh", "-c"])
    assert argv == ["/bin/sh", "-c", "3<<X cat /dev/fd/3 > /out\nthree\nX"]


def test_heredoc_shebang_script_and_partially_quoted_delimiter():
    df = P("""
        FROM python
        RUN <<E"O"F
        #!/usr/bin/env python3
        print("hi")
        EOF
    """)
    run = df.stages[0].instructions[0]
    assert run.heredocs[0].name == "EOF" and not run.heredocs[0].expand
    argv, files = run.argv(["/bin/sh", "-c"])
    assert argv == ["/bin/sh", "-c", "/dev/pipes/EOF"]     # BuildKit runs it through the shell
    assert files["EOF"].startswith("#!/usr/bin/env python3")


def test_heredoc_after_continuation_and_in_onbuild():
    df = P("""
        FROM alpine
        RUN --mount=type=cache,target=/c \\
            <<EOF
        echo hi
        EOF
        ONBUILD RUN <<EOF
        echo later
        EOF
    """)
    run, onb = df.stages[0].instructions
    assert run.heredocs[0].content == "echo hi\n"
    assert onb.trigger.heredocs[0].content == "echo later\n"
    assert onb.expression == "RUN <<EOF\necho later\nEOF"


def test_not_heredocs():
    df = P("""
        FROM alpine
        RUN echo "<<EOF" '<<X' $((1<<2)) cat <<<"here-string"
        ENV X=<<EOF
        RUN ["sh", "-c", "cat <<EOF"]
    """)
    assert all(not getattr(i, "heredocs", []) for i in df.stages[0].instructions)


def test_unterminated_heredoc():
    e = err("""
        FROM alpine
        RUN <<EOF
        echo never ends
        EOFX
    """)
    assert e.line == 2 and "unterminated heredoc" in e.message
    assert str(e).startswith("Dockerfile:2: ")


# ------------------------------------------------------------------ ONBUILD

def test_onbuild():
    df = P("""
        FROM alpine
        ONBUILD ADD . /app/src
        onbuild run --mount=type=cache,target=/c make
    """)
    a, b = df.stages[0].instructions
    assert a.expression == "ADD . /app/src" and isinstance(a.trigger, d.Add)
    assert b.expression == "run --mount=type=cache,target=/c make"
    assert isinstance(b.trigger, d.Run) and b.trigger.mounts[0].target == "/c"
    triggers = d.parse_instructions("\n".join([a.expression, b.expression]), "base-image",
                                    first_line=1)
    assert [t.NAME for t in triggers] == ["ADD", "RUN"]


@pytest.mark.parametrize("text, message", [
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "isn't allowed"),
    ("ONBUILD FROM alpine", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", "isn't allowed"),
    ("ONBUILD FOO x", "unknown instruction: FOO"),
    ("ONBUILD RUN --bad true", "does not take the flag --bad"),
])
def test_onbuild_errors(text, message):
    e = err(f"FROM alpine\n{text}\n")
    assert e.line == 2 and message in e.message, e.message


# ------------------------------------------------------------------ structure errors

def test_unknown_instruction_with_suggestion():
    e = err("""
        FROM alpine
        RUN true
        COPPY a b
    """, filename="app/Dockerfile.dev")
    assert str(e) == "app/Dockerfile.dev:3: unknown instruction: COPPY (did you mean COPY?)"


def test_from_missing_and_instruction_before_from():
    e = err("""
        # just a comment
        ARG X=1
    """)
    assert "no FROM instruction" in e.message and e.line == 2
    e = err("""
        ARG X=1
        RUN echo
        FROM alpine
    """)
    assert e.line == 2 and "RUN before the first FROM" in e.message
    e = err("\n\n# nothing\n")
    assert "no instructions" in e.message


@pytest.mark.parametrize("text, message", [
    ("FROM", "FROM requires either one or three arguments"),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a AS", "FROM requires either one or three arguments"),
    ("FROM a AS 1st", "invalid name for build stage"),
    ("FROM a AS we!rd", "invalid name for build stage"),
    ("FROM a IS b", "FROM requires either one or three arguments"),
    ("FROM --platform linux/amd64 a", "missing a value"),
])
def test_from_errors(text, message):
    e = err(text + "\n")
    assert e.line == 1 and message in e.message, e.message


def test_duplicate_stage_name():
    e = err("""
        FROM alpine AS x
        FROM busybox AS X
    """)
    assert e.line == 2 and "duplicate stage name 'x'" in e.message


def test_multiple_cmd_warning():
    df = P("""
        FROM alpine
        CMD a
        CMD b
    """)
    assert df.warnings == ["Dockerfile:2: stage stage-0 has 2 CMD instructions; only the last "
                           "one (line 3) takes effect"]


# ------------------------------------------------------------------ serialisation

def test_json_round_trip():
    df = P("""
        # syntax=docker/dockerfile:1
        ARG BASE=alpine
        FROM $BASE AS one
        RUN --mount=type=secret,id=x <<EOF
        cat /run/secrets/x
        EOF
        ONBUILD COPY . /src
        HEALTHCHECK --interval=1s CMD true
        FROM one
        COPY --from=one <<X /y
        content
        X
        ENV a=b
        LABEL k=v
        EXPOSE 80
        VOLUME /v
        USER u
        WORKDIR /w
        STOPSIGNAL TERM
        SHELL ["/bin/sh", "-c"]
        ENTRYPOINT ["x"]
        CMD y
        MAINTAINER m
        ADD https://example.com/x /x
    """)
    text = df.to_json()
    back = d.Dockerfile.from_dict(json.loads(text))
    assert back == df
    assert back.to_json() == text
    assert {type(i) for i in df.instructions()} == set(d.INSTRUCTIONS.values())
    one = df.stages[0].instructions[0]
    assert d.instruction_from_dict(json.loads(json.dumps(one.to_dict()))) == one
    sem = one.semantic()
    assert "line" not in sem and "original" not in sem and sem["instruction"] == "RUN"


def test_long_official_image_style_dockerfile():
    df = P(r"""
        FROM debian:bookworm-slim

        LABEL maintainer="Someone <someone@example.com>"

        ENV WEB_VERSION   1.25.3
        ENV PKG_RELEASE=1~bookworm \
            DEBIAN_FRONTEND=noninteractive

        RUN set -x \
        # create a system user first, so uid/gid stay stable
            && groupadd --system --gid 101 web \
            && useradd --system --gid web --no-create-home --home /nonexistent \
                --shell /bin/false --uid 101 web \
            && apt-get update \
            && apt-get install --no-install-recommends --no-install-suggests -y \
                    gnupg1 ca-certificates \
        # clean up
            && rm -rf /var/lib/apt/lists/*

        COPY docker-entrypoint.sh /
        COPY 10-listen.envsh 20-templates.sh /docker-entrypoint.d/
        ENTRYPOINT ["/docker-entrypoint.sh"]
        EXPOSE 80
        STOPSIGNAL SIGQUIT
        CMD ["web", "-g", "daemon off;"]
    """)
    ins = df.stages[0].instructions
    assert [i.NAME for i in ins] == ["LABEL", "ENV", "ENV", "RUN", "COPY", "COPY", "ENTRYPOINT",
                                     "EXPOSE", "STOPSIGNAL", "CMD"]
    assert ins[1].pairs[0].value == "1.25.3" and ins[1].legacy
    assert [p.key for p in ins[2].pairs] == ["PKG_RELEASE", "DEBIAN_FRONTEND"]
    run = ins[3]
    assert (run.line, run.end_line) == (9, 18)
    assert "# clean up" not in run.command[0] and "create a system user" not in run.command[0]
    assert run.command[0].startswith("set -x     && groupadd")
    assert run.command[0].endswith("&& rm -rf /var/lib/apt/lists/*")
    assert ins[5].sources == ["10-listen.envsh", "20-templates.sh"]
    assert ins[9].command == ["web", "-g", "daemon off;"]


def test_broken_heredoc_delimiter_is_no_heredoc():
    # as in Docker: a delimiter the shell lexer can't read is not a heredoc, so the next line
    # is an instruction of its own
    e = err("""
        FROM alpine
        RUN true
        RUN <<"EOF
        x
    """)
    assert str(e) == "Dockerfile:4: unknown instruction: x"
