"""The Dockerfile parser: real-world shapes, Docker's quirks, and errors with file:line
(heredocs, ONBUILD, structure errors and serialisation: test_dockerfile_structure.py)."""

import pytest

from imagetool.builder import dockerfile as d
from imagetool.builder.dockerfile import DockerfileError, parse
from tests.imagetool.builder.dockerfile_help import P, err

# ------------------------------------------------------------------ real-world shapes

def test_node_getting_started():
    df = P("""
        # syntax=docker/dockerfile:1
        FROM node:18-alpine
        WORKDIR /app
        COPY package.json yarn.lock ./
        RUN yarn install --production
        COPY . .
        CMD ["node", "src/index.js"]
        EXPOSE 3000
    """)
    assert df.syntax == "docker/dockerfile:1"
    assert len(df.stages) == 1 and df.stages[0].name is None
    assert df.stages[0].header.image == "node:18-alpine"
    kinds = [type(i).__name__ for i in df.stages[0].instructions]
    assert kinds == ["Workdir", "Copy", "Run", "Copy", "Cmd", "Expose"]
    copy = df.stages[0].instructions[1]
    assert copy.sources == ["package.json", "yarn.lock"] and copy.dest == "./"
    run = df.stages[0].instructions[2]
    assert run.command == ["yarn install --production"] and run.shell_form
    cmd = df.stages[0].instructions[4]
    assert cmd.command == ["node", "src/index.js"] and not cmd.shell_form
    assert [i.line for i in df.instructions()] == [2, 3, 4, 5, 6, 7, 8]
    assert df.warnings == []


def test_multistage_go_build():
    df = P("""
        ARG GO_VERSION=1.22
        FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build
        WORKDIR /src
        RUN --mount=type=cache,target=/root/.cache/go-build \\
            --mount=type=bind,source=go.sum,target=go.sum \\
            go build -o /out/app ./cmd/app
        FROM gcr.io/distroless/static:nonroot
        COPY --from=build --chown=nonroot:nonroot --chmod=0755 /out/app /app
        USER nonroot
        ENTRYPOINT ["/app"]
    """)
    assert [a.name for a in df.meta_args[0].args] == ["GO_VERSION"]
    b, final = df.stages
    assert b.name == "build" and b.header.platform == "$BUILDPLATFORM"
    assert b.header.image == "golang:${GO_VERSION}"
    run = b.instructions[1]
    assert (run.line, run.end_line) == (4, 6)
    assert [m.type for m in run.mounts] == ["cache", "bind"]
    assert run.mounts[0].target == "/root/.cache/go-build" and not run.mounts[0].readonly
    assert run.mounts[1].source == "go.sum" and run.mounts[1].readonly
    assert run.command == ["go build -o /out/app ./cmd/app"]
    cp = final.instructions[0]
    assert (cp.from_stage, cp.chown, cp.chmod) == ("build", "nonroot:nonroot", "0755")
    assert df.stage("BUILD") is b and df.stage(1) is final and df.stage("nope") is None


def test_keywords_case_insensitive_and_original_text():
    df = P("""
        from alpine as Base
        run echo   hi
        Cmd echo bye
    """)
    assert df.stages[0].name == "base"
    run = df.stages[0].instructions[0]
    assert isinstance(run, d.Run) and run.original == "run echo   hi"
    assert run.command == ["echo   hi"]


# ------------------------------------------------------------------ directives

def test_escape_backtick_windows_style():
    df = P("""
        # escape=`
        FROM mcr.microsoft.com/windows/servercore
        COPY testfile.txt c:\\
        RUN dir c:\\ `
            && echo done
        SHELL ["powershell", "-c"]
    """)
    assert df.escape == "`"
    assert df.stages[0].instructions[0].dest == "c:\\"
    run = df.stages[0].instructions[1]
    assert run.command == ["dir c:\\     && echo done"]
    assert df.stages[0].instructions[2].shell == ["powershell", "-c"]


def test_directive_only_at_top():
    df = P("""
        FROM alpine
        # escape=`
        RUN echo a \\
            b
    """)
    assert df.escape == "\\" and df.directives == {}
    assert df.stages[0].instructions[0].command == ["echo a     b"]
    # an empty line ends the directives too, so this escape is a plain comment
    df = parse("\n# escape=`\nFROM alpine\n")
    assert df.escape == "\\"
    # an unknown directive ends them as well
    df = P("""
        # foo=bar
        # escape=`
        FROM alpine
    """)
    assert df.escape == "\\"
    df = P("""
        #  SYNTAX = docker/dockerfile:1.7
        #escape=`
        #check=skip=all
        FROM alpine
    """)
    assert df.directives == {"syntax": "docker/dockerfile:1.7", "escape": "`",
                             "check": "skip=all"}


def test_directive_errors():
    e = err("""
        # escape=`
        # escape=\\
        FROM alpine
    """)
    assert str(e) == "Dockerfile:2: only one escape parser directive can be used"
    e = err("""
        # escape=x
        FROM alpine
    """)
    assert e.line == 1 and "invalid escape token" in e.message


# ------------------------------------------------------------------ lines, comments, continuations

def test_continuation_trailing_spaces_comments_and_empty_lines():
    text = ("FROM debian\n"
            "RUN apt-get update && \\   \n"
            "    # a comment inside the continuation\n"
            "\n"
            "    apt-get install -y \\\t\n"
            "      curl\n"
            "CMD x\n")
    df = parse(text)
    run = df.stages[0].instructions[0]
    assert run.command == ["apt-get update &&     apt-get install -y       curl"]
    assert (run.line, run.end_line) == (2, 6)
    assert df.stages[0].instructions[1].line == 7
    assert len(df.warnings) == 1 and df.warnings[0].startswith("Dockerfile:2: empty continuation")


def test_hash_inside_line_is_not_a_comment_and_crlf_and_bom():
    df = parse("\ufeffFROM alpine\r\nRUN echo '#not a comment' # nor this\r\n  # but this is\r\n")
    run = df.stages[0].instructions[0]
    assert run.command == ["echo '#not a comment' # nor this"]
    df = parse(b"FROM alpine\nLABEL a=\xc3\xa9\n")
    assert df.stages[0].instructions[0].pairs[0].value == "é"
    e = err_bytes(b"FROM alpine\nRUN echo \xff\n")
    assert e.line == 2 and "UTF-8" in e.message


def err_bytes(data: bytes) -> DockerfileError:
    with pytest.raises(DockerfileError) as ei:
        parse(data)
    return ei.value


def test_continuation_at_end_of_file():
    df = parse("FROM alpine\nRUN echo a \\")
    assert df.stages[0].instructions[0].command == ["echo a"]


# ------------------------------------------------------------------ exec and shell form

def test_json_forms_and_docker_fallback_to_shell():
    df = P(r"""
        FROM alpine
        RUN ["sh", "-c", "echo \"quoted\" \\back"]
        CMD [ "a" , "b" ]  trailing words are ignored, as Go's decoder ignores them
        ENTRYPOINT ["broken", "json"
        CMD ['single', 'quotes']
        ENTRYPOINT []
        CMD [""]
    """)
    ins = df.stages[0].instructions
    assert ins[0].command == ["sh", "-c", 'echo "quoted" \\back'] and not ins[0].shell_form
    assert ins[1].command == ["a", "b"] and not ins[1].shell_form
    assert ins[2].command == ['["broken", "json"'] and ins[2].shell_form
    assert ins[3].command == ["['single', 'quotes']"] and ins[3].shell_form
    assert ins[4].command == [] and not ins[4].shell_form
    assert ins[5].command == [""] and not ins[5].shell_form
    assert sum("not a valid JSON array" in w for w in df.warnings) == 2


def test_json_array_of_non_strings_is_an_error():
    e = err("""
        FROM alpine
        CMD ["sleep", 10]
    """)
    assert e.line == 2 and "only strings" in e.message
    e = err("""
        FROM alpine
        COPY ["a", null, "/b"]
    """)
    assert e.line == 2


def test_copy_json_form_keeps_spaces():
    df = P("""
        FROM alpine
        COPY ["my file.txt", "other one", "/dest dir/"]
        ADD --chown=1:1 ["a b", "/c"]
        VOLUME ["/data", "/var/log"]
        VOLUME /one /two
    """)
    cp, add, v1, v2 = df.stages[0].instructions
    assert cp.sources == ["my file.txt", "other one"] and cp.dest == "/dest dir/"
    assert cp.json_form
    assert add.sources == ["a b"] and add.chown == "1:1"
    assert v1.paths == ["/data", "/var/log"] and v2.paths == ["/one", "/two"]


# ------------------------------------------------------------------ key=value instructions

def test_env_forms():
    df = P("""
        FROM alpine
        ENV a=b c="d e" f=g\\ h
        ENV LEGACY value with   spaces
        ENV MY_NAME="John Doe" MY_DOG=Rex\\ The\\ Dog \\
            MY_CAT=fluffy
    """)
    e1, e2, e3 = df.stages[0].instructions
    assert [(p.key, p.value) for p in e1.pairs] == [("a", "b"), ("c", '"d e"'), ("f", "g\\ h")]
    assert not e1.legacy
    assert [(p.key, p.value) for p in e2.pairs] == [("LEGACY", "value with   spaces")]
    assert e2.legacy and any("legacy" in w for w in df.warnings)
    assert [p.key for p in e3.pairs] == ["MY_NAME", "MY_DOG", "MY_CAT"]


def test_label_quotes_and_multiple():
    df = P("""
        FROM alpine
        LABEL "com.example.vendor"="ACME Incorporated"
        LABEL version="1.0" description="This text illustrates \\
        that label-values can span multiple lines." other='single quoted'
    """)
    l1, l2 = df.stages[0].instructions
    assert (l1.pairs[0].key, l1.pairs[0].value) == ('"com.example.vendor"', '"ACME Incorporated"')
    assert [p.key for p in l2.pairs] == ["version", "description", "other"]
    assert l2.pairs[2].value == "'single quoted'"


@pytest.mark.parametrize("text, message", [
    ("ENV", "ENV requires at least one argument"),
    ("ENV onlykey", "ENV must have two arguments"),
    ("ENV a=b c", "can't find = in 'c'"),
    ("ENV =x", "ENV names can not be blank"),
    ("LABEL", "LABEL requires at least one argument"),
    ("ARG", "ARG requires at least one argument"),
    ("ARG =1", "ARG names can not be blank"),
])
def test_key_value_errors(text, message):
    e = err(f"FROM alpine\n{text}\n")
    assert e.line == 2 and message in e.message


def test_arg_forms():
    df = P("""
        ARG A B=2 C="x y"
        FROM alpine
        ARG TARGETPLATFORM
    """)
    args = df.meta_args[0].args
    assert [(a.name, a.default) for a in args] == [("A", None), ("B", "2"), ("C", '"x y"')]
    assert df.stages[0].instructions[0].args[0].name == "TARGETPLATFORM"


# ------------------------------------------------------------------ EXPOSE, HEALTHCHECK, misc

def test_expose_and_ports():
    df = P("""
        FROM alpine
        EXPOSE 80/tcp 53/udp 8000-8002
        EXPOSE $PORT
    """)
    e1, e2 = df.stages[0].instructions
    assert e1.ports == ["80/tcp", "53/udp", "8000-8002"]
    assert d.exposed_ports(e1.ports) == ["80/tcp", "53/udp", "8000/tcp", "8001/tcp",
                                         "8002/tcp"]
    assert e2.ports == ["$PORT"]
    assert d.exposed_ports(["443/TCP", "1.2.3.4:8080:80"]) == ["443/tcp", "80/tcp"]
    for bad in ["http", "80/icmp", "0", "70000", "90-80"]:
        with pytest.raises(ValueError):
            d.exposed_ports([bad])
    e = err("FROM alpine\nEXPOSE 80/icmp\n")
    assert e.line == 2 and "invalid proto" in e.message


def test_healthcheck():
    df = P("""
        FROM alpine
        HEALTHCHECK NONE
        HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms \\
          --retries=3 CMD curl -f http://localhost/ || exit 1
        HEALTHCHECK CMD ["/bin/check", "--fast"]
    """)
    h0, h1, h2 = df.stages[0].instructions
    assert h0.test == ["NONE"]
    assert h1.test == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    assert (h1.interval, h1.timeout) == (300 * 10**9, 3 * 10**9)
    assert (h1.start_period, h1.start_interval, h1.retries) == (90 * 10**9, 5 * 10**8, 3)
    assert h2.test == ["CMD", "/bin/check", "--fast"] and h2.interval == 0
    assert any("3 HEALTHCHECK instructions" in w for w in df.warnings)


@pytest.mark.parametrize("text, message", [
    ("HEALTHCHECK", "requires at least one argument"),
    ("HEALTHCHECK NONE x", "NONE takes no arguments"),
    ("HEALTHCHECK CMD", "missing command"),
    ("HEALTHCHECK FOO bar", "unknown type"),
    ("HEALTHCHECK --interval=5 CMD x", "invalid duration"),
    ("HEALTHCHECK --interval=10us CMD x", "cannot be less than 1ms"),
    ("HEALTHCHECK --retries=-1 CMD x", "cannot be negative"),
    ("HEALTHCHECK --retries=many CMD x", "not a number"),
    ("HEALTHCHECK --period=1s CMD x", "does not take the flag --period"),
])
def test_healthcheck_errors(text, message):
    e = err(f"FROM alpine\n{text}\n")
    assert e.line == 2 and message in e.message, e.message


def test_durations():
    assert d.parse_duration("1h2m3.5s") == (3600 + 120 + 3.5) * 10**9
    assert d.parse_duration("0") == 0 and d.parse_duration("-1s") == -(10**9)
    assert d.parse_duration("1.5h") == 5400 * 10**9 and d.parse_duration("250us") == 250_000
    for bad in ["", "5", "1x", "s", ".s", "1h 2m"]:
        with pytest.raises(ValueError):
            d.parse_duration(bad)


def test_user_workdir_stopsignal_maintainer_shell():
    df = P("""
        FROM alpine
        USER 1000:1000
        WORKDIR /srv/my app
        STOPSIGNAL SIGQUIT
        STOPSIGNAL 9
        STOPSIGNAL $SIG
        MAINTAINER someone <a@b.c>
        SHELL ["/bin/bash", "-o", "pipefail", "-c"]
    """)
    u, w, s1, s2, s3, m, sh = df.stages[0].instructions
    assert u.user == "1000:1000" and w.path == "/srv/my app"
    assert (s1.signal, s2.signal, s3.signal) == ("SIGQUIT", "9", "$SIG")
    assert m.name == "someone <a@b.c>" and any("MAINTAINER" in x for x in df.warnings)
    assert sh.shell == ["/bin/bash", "-o", "pipefail", "-c"]
    assert d.parse_signal("SIGRTMIN+3") == 37 and d.parse_signal("term") == 15


@pytest.mark.parametrize("text, message", [
    ("USER", "USER requires exactly one argument"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("STOPSIGNAL SIGNOPE", "invalid signal"),
    ("STOPSIGNAL 0", "invalid signal"),
    ("SHELL /bin/bash -c", "JSON form"),
    ("SHELL []", "SHELL requires at least one argument"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME ["/a", " "]', "can not be an empty string"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("RUN", "RUN requires at least one argument"),
    ("COPY onlyone", "requires at least two arguments"),
    ("COPY a b c", "must be a directory and end with a /"),
    ("COPY a <<EOF\nx\nEOF", "cannot accept a heredoc as a destination"),
])
def test_argument_errors(text, message):
    e = err(f"FROM alpine\n{text}\n")
    assert e.line == 2 and message in e.message, e.message


# ------------------------------------------------------------------ flags

def test_flags_parsed_per_instruction():
    df = P("""
        FROM --platform=linux/arm64 alpine AS a
        COPY --link --from=a --chmod=u+x,g-w --exclude=*.md --exclude=*.txt . /x/
        ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d \\
            --keep-git-dir=false https://example.com/a.tar.gz /
        RUN --network=none --security=sandbox ["true"]
        COPY --link=false --parents a/b /c/
    """)
    cp, add, run, cp2 = df.stages[0].instructions
    assert df.stages[0].header.platform == "linux/arm64"
    assert cp.link and cp.from_stage == "a" and cp.chmod == "u+x,g-w"
    assert cp.exclude == ["*.md", "*.txt"] and cp.flags[0] == "--link"
    assert add.checksum.startswith("sha256:24454f") and add.keep_git_dir is False
    assert run.network == "none" and run.security == "sandbox" and run.command == ["true"]
    assert cp2.link is False and cp2.parents is True


def test_flag_with_quotes_and_double_dash():
    df = P("""
        FROM alpine
        COPY --chown="app user" -- --weird-name /dst
    """)
    cp = df.stages[0].instructions[0]
    assert cp.chown == "app user" and cp.sources == ["--weird-name"]


@pytest.mark.parametrize("text, message", [
    ("RUN --foo=bar true", "RUN does not take the flag --foo"),
    ("RUN --mout=type=cache,target=/x true", "did you mean --mount?"),
    ("COPY --from a /b", "missing a value on flag: --from"),
    ("COPY --link=maybe a /b", "expecting boolean value"),
    ("COPY --link= a /b", "missing a value"),
    ("COPY --from=a --from=b x /y", "duplicate flag"),
    ("COPY --chmod=999 a /b", "invalid chmod"),
    ("ADD --checksum=md5:abc https://x/y /z", "invalid checksum"),
    ("ADD --checksum=sha256:" + "a" * 64 + " local.tar /z", "needs an http(s) or git source"),
    ("WORKDIR --x=1 /a", "WORKDIR does not take the flag --x"),
    ("CMD --help", "CMD does not take the flag --help"),
    ("RUN --network=bridge true", "unsupported"),
    ("RUN --mount=type=nfs,target=/x true", "unsupported mount type"),
    ("RUN --mount=type=cache true", "needs a target"),
    ("RUN --mount=type=cache,target=/x,sharing=sometimes true", "sharing"),
    ("RUN --mount=type=bind,target=/x,wat=1 true", "unexpected key 'wat'"),
    ("RUN --mount=type=tmpfs,target=/x,from=a true", "does not take from="),
])
def test_flag_errors(text, message):
    e = err(f"FROM alpine AS a\n{text}\n")
    assert e.line == 2 and message in e.message, e.message
    assert str(e).startswith("Dockerfile:2: ")


def test_mounts():
    m = d.parse_mount("type=secret,id=aws,required")
    assert (m.type, m.id, m.target, m.required, m.readonly) == (
        "secret", "aws", "/run/secrets/aws", True, False)
    m = d.parse_mount("type=secret,target=/root/.npmrc")
    assert m.id == ".npmrc"
    m = d.parse_mount("type=cache,target=/var/cache/apt,sharing=locked,mode=0755,uid=1,id=apt")
    assert (m.sharing, m.mode_int(), m.uid, m.id) == ("locked", 0o755, "1", "apt")
    m = d.parse_mount("target=/src,rw")
    assert m.type == "bind" and not m.readonly
    m = d.parse_mount('type=bind,"source=a,b",target=/x,ro=false')
    assert m.source == "a,b" and not m.readonly
    m = d.parse_mount("type=tmpfs,target=/tmp,size=64m")
    assert m.size == "64m"
    m = d.parse_mount("type=ssh")
    assert m.id == "default"
    # values with variables are checked once expanded (expand.py)
    m = d.parse_mount("type=cache,target=/x,uid=$UID")
    assert m.uid == "$UID"
