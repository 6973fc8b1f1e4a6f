"""Variable substitution: the shell-word lexer and which instructions Docker expands."""

import textwrap

import pytest

from imagetool.builder import dockerfile as d
from imagetool.builder.dockerfile import DockerfileError, parse
from imagetool.builder.expand import EXPANDING, VERBATIM, ExpandError, Lexer, expand_instruction

ENV = {"A": "aval", "E": "", "P": "/usr/local/bin/python3.11", "S": "a b  c", "HOME": "/root"}


@pytest.mark.parametrize("text, want", [
    ("$A", "aval"), ("${A}", "aval"), ("$A$A", "avalaval"), ("${A}_x", "aval_x"),
    ("$A_x", ""),                       # the name is A_x, which is unset
    ("${U:-x}", "x"), ("${E:-x}", "x"), ("${A:-x}", "aval"),
    ("${U-x}", "x"), ("${E-x}", ""),    # without ':' only unset counts
    ("${A:+y}", "y"), ("${E:+y}", ""), ("${U:+y}", ""), ("${E+y}", "y"),
    ("${U:-$A}", "aval"), ("${U:-${A:+nested}}", "nested"), ('${U:-"q  q"}', "q  q"),
    ("'$A'", "$A"), ('"$A"', "aval"), ('"${A}s"', "avals"), ("\\$A", "$A"),
    ('"\\$A"', "$A"), ('"a\\b"', "a\\b"), ('"a\\"b"', 'a"b'), ("a\\ b", "a b"),
    ("'a\\b'", "a\\b"), ("$", "$"), ("a$", "a$"), ("$1x", "x"), ("$@", ""),
    ("${P#*/}", "usr/local/bin/python3.11"), ("${P##*/}", "python3.11"),
    ("${P%/*}", "/usr/local/bin"), ("${P%%/*}", ""), ("${P%.*}", "/usr/local/bin/python3"),
    ("${P/python/py}", "/usr/local/bin/py3.11"), ("${P//o/0}", "/usr/l0cal/bin/pyth0n3.11"),
    ("${P/#\\/usr/X}", "/usr/local/bin/python3.11"),
    ("${A#[a-b]}", "val"), ("${A#?}", "val"), ("${U#x}", ""),
    ("~/$HOME", "~//root"),             # no tilde expansion in Docker
])
def test_word(text, want):
    assert Lexer().word(text, ENV) == want


@pytest.mark.parametrize("text, message", [
    ("${A", "missing '}'"), ("${}", "bad substitution"), ("${:a}", "bad substitution"),
    ("${A:-x", "missing '}'"), ("'abc", "matching single-quote"),
    ('"abc', "matching double-quote"), ("${U?}", "U: is not allowed to be unset"),
    ("${E:?}", "E: is not allowed to be empty"), ("${U?give me U}", "U: give me U"),
    ("${A:=x}", "unsupported modifier (:=)"), ("${A:#x}", "unsupported modifier"),
    ("${A=x}", "unsupported modifier (=)"), ("${A/x", "missing '/'"),
])
def test_word_errors(text, message):
    with pytest.raises(ExpandError) as ei:
        Lexer().word(text, ENV)
    assert message in str(ei.value) and text in str(ei.value)


def test_words_split_only_unquoted_expansions():
    assert Lexer().words("$S 'x y' \"\" z", ENV) == ["a", "b", "c", "x y", "z"]
    assert Lexer().words('"$S"', ENV) == ["a b  c"]
    assert Lexer().words("a\\ b c", ENV) == ["a b", "c"]


def test_backtick_escape():
    lx = Lexer("`")
    assert lx.word("C:\\path\\$A `$A", ENV) == "C:\\path\\aval $A"
    assert lx.word('"C:\\dir\\"', ENV) == "C:\\dir\\"
    with pytest.raises(ValueError):
        Lexer("x")


def test_lexer_modes():
    raw = Lexer(raw_quotes=True, raw_escapes=True)
    assert raw.word("'a' \"b\" \\c", ENV) == "'a' \"b\" \\c"
    keep = Lexer(skip_unset=True)
    assert keep.word("$U ${U} ${U:-x} $A", ENV) == "$U ${U} ${U:-x} aval"
    literal_quotes = Lexer(skip_quotes=True)
    assert literal_quotes.word("echo \"$A\" '$A' \\$A", ENV) == "echo \"aval\" 'aval' $A"


def test_used_and_unmatched():
    res = Lexer().process("$A ${U:-$E} '$NOT'", ENV)
    assert res.used == {"A", "U", "E"} and res.unmatched == {"U"}


def test_expansion_table():
    assert {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR"} <= EXPANDING
    assert {"CMD", "ENTRYPOINT", "SHELL", "ONBUILD"} <= VERBATIM
    assert EXPANDING.isdisjoint(VERBATIM)
    assert EXPANDING | VERBATIM == set(d.INSTRUCTIONS)


def stage(text, escape_dir=""):
    df = parse(escape_dir + "FROM scratch\n" + textwrap.dedent(text).lstrip("\n"))
    return df.stages[0].instructions


def x(ins, env=ENV, **kw):
    return expand_instruction(ins, env, **kw)


def test_expanded_instructions():
    ins = stage("""
        ENV greeting="hello $A" $A=key path=${HOME}/bin
        LABEL "maintainer"="$A <a@b>" 'single'='$A'
        EXPOSE $PORTS 9000/udp
        WORKDIR $HOME/app
        USER ${USER:-app}:$G
        VOLUME ["$HOME/data", "/static"]
        STOPSIGNAL SIG$SIGNAME
        COPY --chown=$U:$G --chmod=${MODE} $SRC* "${HOME}/xy/"
        ADD --checksum=$SUM https://example.com/$A.tgz /opt/
    """)
    env = dict(ENV, PORTS="80 443/tcp", G="staff", SIGNAME="TERM", SRC="app", MODE="0644",
               U="1000", SUM="sha256:" + "b" * 64)
    env_, label, expose, workdir, user, volume, sig, copy, add = [x(i, env) for i in ins]
    assert [(p.key, p.value) for p in env_.pairs] == [
        ("greeting", "hello aval"), ("aval", "key"), ("path", "/root/bin")]
    assert [(p.key, p.value) for p in label.pairs] == [
        ("maintainer", "aval <a@b>"), ("single", "$A")]
    assert expose.ports == ["80", "443/tcp", "9000/udp"]
    assert workdir.path == "/root/app" and user.user == "app:staff"
    assert volume.paths == ["/root/data", "/static"] and sig.signal == "SIGTERM"
    assert copy.sources == ["app*"] and copy.dest == "/root/xy/"
    assert (copy.chown, copy.chmod) == ("1000:staff", "0644")
    assert add.sources == ["https://example.com/aval.tgz"] and add.checksum == env["SUM"]
    # the parsed instructions are left as they were
    assert ins[3].path == "$HOME/app"


def test_not_expanded():
    ins = stage("""
        RUN echo $A
        CMD echo $A
        ENTRYPOINT ["echo", "$A"]
        SHELL ["/bin/$A", "-c"]
        HEALTHCHECK CMD echo $A
        ONBUILD RUN echo $A
        ONBUILD COPY $A /x
    """)
    for i in ins:
        assert x(i) == i


def test_run_mount_options_are_expanded_and_checked():
    (run,) = stage("RUN --mount=type=cache,target=$HOME/.cache,uid=$UID,id=c-$A make\n")
    out = x(run, dict(ENV, UID="1000"))
    m = out.mounts[0]
    assert (m.target, m.uid, m.id) == ("/root/.cache", "1000", "c-aval")
    assert out.command == ["make"]
    with pytest.raises(DockerfileError) as ei:
        x(run, dict(ENV, UID="nobody"))
    assert ei.value.line == 2 and "invalid uid" in ei.value.message


def test_env_sees_the_environment_before_the_instruction():
    (env,) = stage("ENV A=new B=$A\n")
    out = x(env)
    assert [(p.key, p.value) for p in out.pairs] == [("A", "new"), ("B", "aval")]


def test_arg_defaults_expand_in_order():
    (arg,) = stage("ARG V=1 W=${V}.0 X\n")
    out = x(arg, {})
    assert [(a.name, a.default) for a in out.args] == [("V", "1"), ("W", "1.0"), ("X", None)]


def test_copy_heredoc_expansion_keeps_quotes():
    ins = stage('''
        COPY <<EOF /etc/motd
        Hello "$A" and '$HOME' \\$notavar
        EOF
        COPY <<"EOF" /etc/raw
        Hello "$A"
        EOF
        COPY <<-EOF /etc/tabs
        \t$A
        \tEOF
    ''')
    a, b, c = [x(i) for i in ins]
    assert a.heredocs[0].content == "Hello \"aval\" and '/root' $notavar\n"
    assert b.heredocs[0].content == 'Hello "$A"\n'
    assert c.heredocs[0].content == "aval\n" and not c.heredocs[0].chomp
    # expanding twice changes nothing
    assert x(a) == a


def test_from_expansion_and_blank_base():
    df = parse("ARG IMG\nFROM ${IMG:-alpine}:${TAG}\nFROM $NOPE\n")
    one, two = (s.header for s in df.stages)
    assert x(one, {"TAG": "3.19"}).image == "alpine:3.19"
    with pytest.raises(DockerfileError) as ei:
        x(two, {})
    assert str(ei.value) == "Dockerfile:3: FROM: base name ($NOPE) should not be blank"


def test_errors_name_the_line():
    ins = stage("""
        ENV a=1
        WORKDIR ${A
        EXPOSE $P
        COPY $S /one
        STOPSIGNAL $SIG
    """)
    with pytest.raises(DockerfileError) as ei:
        x(ins[1])
    assert ei.value.line == 3 and "missing '}'" in str(ei.value)
    with pytest.raises(DockerfileError) as ei:
        x(ins[2], {"P": "80/icmp"})
    assert str(ei.value).startswith("Dockerfile:4: EXPOSE: invalid proto")
    assert x(ins[3], {"S": "a b"}).sources == ["a b"]  # one word: no splitting for COPY
    with pytest.raises(DockerfileError) as ei:
        x(ins[4], {"SIG": "NOPE"})
    assert ei.value.line == 6 and "invalid signal" in ei.value.message


def test_copy_many_sources_after_expansion_needs_dir_dest():
    (cp,) = stage("COPY a b $D\n")
    assert x(cp, {"D": "/dir/"}).dest == "/dir/"
    with pytest.raises(DockerfileError) as ei:
        x(cp, {"D": "/file"})
    assert "must be a directory" in ei.value.message


def test_escape_directive_applies_to_expansion():
    df = parse("# escape=`\nFROM scratch\nWORKDIR C:\\Users\\$A\nENV X=a`$A\n")
    wd, env = df.stages[0].instructions
    assert x(wd, ENV, escape=df.escape).path == "C:\\Users\\aval"
    assert x(env, ENV, escape="`").pairs[0].value == "a$A"
