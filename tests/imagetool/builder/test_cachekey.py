"""Cache keys: parent + normalised expanded instruction + content hash of what COPY/ADD read."""

import os

import pytest

from imagetool.builder import cachekey as ck
from imagetool.builder.dockerfile import DockerfileError, parse
from imagetool.builder.dockerignore import DockerIgnore
from imagetool.builder.expand import expand_instruction
from imagetool.builder.plan import plan

BASE = ck.base_key("docker.io/library/alpine:3.19", digest="sha256:" + "1" * 64,
                   platform="linux/amd64")


def ins(text: str, n: int = 0):
    return parse("FROM scratch\n" + text).stages[0].instructions[n]


def test_key_shape_and_determinism():
    a = ck.step_key(BASE, ins("RUN make\n"))
    assert a.startswith("sha256:") and len(a) == 71
    assert a == ck.step_key(BASE, ins("RUN make\n"))
    assert a != ck.step_key(BASE, ins("RUN make all\n"))
    assert a != ck.step_key(ck.step_key(BASE, ins("ENV A=1\n")), ins("RUN make\n"))
    assert a != ck.step_key(BASE, ins("RUN make\n"), platform="linux/arm64")
    assert a != ck.step_key(BASE, ins("RUN make\n"), extra={"no-cache-filter": "x"})
    assert ck.base_key("alpine") != ck.base_key("alpine", digest="sha256:" + "2" * 64)


def test_position_comments_and_spelling_do_not_matter():
    one = parse("FROM scratch\nRUN make\n").stages[0].instructions[0]
    two = parse("FROM scratch\n# a comment\n\nrun \\\n make\n").stages[0].instructions[0]
    assert (one.line, one.original) != (two.line, two.original)
    assert ck.step_key(BASE, one) == ck.step_key(BASE, two)
    assert ck.step_key(BASE, one) == ck.step_key(BASE, one.to_dict())


def test_expanded_arguments_are_what_counts():
    wd = ins("WORKDIR /srv/$APP\n")
    a = expand_instruction(wd, {"APP": "a"})
    b = expand_instruction(wd, {"APP": "b"})
    assert ck.step_key(BASE, a) != ck.step_key(BASE, b)
    assert ck.step_key(BASE, a) == ck.step_key(BASE, expand_instruction(
        ins("WORKDIR /srv/a\n"), {}))


def test_run_args_count_but_proxies_do_not():
    run = ins("RUN ./build.sh\n")
    k = ck.step_key(BASE, run, args={"VERSION": "1"})
    assert k != ck.step_key(BASE, run, args={"VERSION": "2"})
    assert k == ck.step_key(BASE, run, args={"VERSION": "1", "HTTP_PROXY": "http://p:3128",
                                              "no_proxy": "localhost"})


def write(root, rel, data="x", mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(data)
    os.chmod(p, mode)
    return p


@pytest.fixture
def ctx(tmp_path):
    root = str(tmp_path / "ctx")
    write(root, "package.json", '{"name": "app"}')
    write(root, "yarn.lock", "lock")
    write(root, "src/index.js", "console.log(1)")
    write(root, "src/util.js", "exports.x = 1")
    write(root, "node_modules/dep/index.js", "dep")
    write(root, "Dockerfile", "FROM node\n")
    write(root, "notes.md", "notes")
    return root


def digest(root, text, ignore=None, **kw):
    return ck.sources_digest(ins(text), root, ignore=ignore, **kw)


def test_copy_content_hash(ctx):
    base = digest(ctx, "COPY . .\n")
    assert base == digest(ctx, "COPY . .\n")
    write(ctx, "src/index.js", "console.log(2)")
    changed = digest(ctx, "COPY . .\n")
    assert changed != base
    write(ctx, "src/index.js", "console.log(1)")
    assert digest(ctx, "COPY . .\n") == base
    os.chmod(os.path.join(ctx, "src/index.js"), 0o755)
    assert digest(ctx, "COPY . .\n") != base


def test_mtime_ignored_unless_asked(ctx):
    before = digest(ctx, "COPY src /app/\n")
    with_mtime = digest(ctx, "COPY src /app/\n", with_mtime=True)
    os.utime(os.path.join(ctx, "src/util.js"), (1, 1))
    assert digest(ctx, "COPY src /app/\n") == before
    assert digest(ctx, "COPY src /app/\n", with_mtime=True) != with_mtime


def test_only_the_named_sources_count(ctx):
    k = digest(ctx, "COPY package.json yarn.lock ./\n")
    write(ctx, "src/index.js", "changed")
    assert digest(ctx, "COPY package.json yarn.lock ./\n") == k
    write(ctx, "yarn.lock", "changed")
    assert digest(ctx, "COPY package.json yarn.lock ./\n") != k


def test_dockerignore_excluded_files_do_not_count(ctx):
    di = DockerIgnore.parse("node_modules\n*.md\nDockerfile\n")
    k = digest(ctx, "COPY . .\n", di)
    write(ctx, "node_modules/dep/index.js", "other")
    write(ctx, "notes.md", "other")
    write(ctx, "Dockerfile", "FROM node:20\n")
    assert digest(ctx, "COPY . .\n", di) == k
    write(ctx, "src/new.js", "new")
    assert digest(ctx, "COPY . .\n", di) != k
    recs = ck.context_records(ctx, ["."], ignore=di)
    names = [r[0] for r in recs]
    assert "src/index.js" in names and "notes.md" not in names and "Dockerfile" not in names


def test_wildcards(ctx):
    recs = ck.context_records(ctx, ["src/*.js"])
    assert sorted(r[0] for r in recs) == ["src/index.js", "src/util.js"]
    recs = ck.context_records(ctx, ["*.json", "yarn.loc?"])
    assert [r[0] for r in recs] == ["package.json", "yarn.lock"]
    k = digest(ctx, "COPY src/*.js /app/\n")
    write(ctx, "src/extra.js", "e")
    assert digest(ctx, "COPY src/*.js /app/\n") != k
    # BuildKit allows a wildcard that matches nothing
    assert ck.context_records(ctx, ["*.nothing"]) == []


def test_missing_or_ignored_source_is_an_error_with_the_line(ctx):
    with pytest.raises(DockerfileError) as ei:
        ck.sources_digest(parse("FROM scratch\nRUN x\nCOPY nope.txt /\n").stages[0]
                          .instructions[1], ctx)
    assert str(ei.value) == ("Dockerfile:3: COPY failed: nope.txt: not found in the build "
                             "context")
    with pytest.raises(DockerfileError) as ei:
        digest(ctx, "COPY notes.md /\n", DockerIgnore.parse("*.md\n"))
    assert "excluded by .dockerignore" in ei.value.message


def test_paths_cannot_leave_the_context(ctx, tmp_path):
    write(str(tmp_path), "outside.txt", "secret")
    assert ck.context_records(ctx, ["../package.json"]) == ck.context_records(
        ctx, ["package.json"])
    with pytest.raises(ck.SourceError):
        ck.context_records(ctx, ["../outside.txt"])
    os.symlink("../outside.txt", os.path.join(ctx, "escape"))
    with pytest.raises(ck.SourceError):
        ck.context_records(ctx, ["escape"])   # resolved inside the context: /outside.txt


def test_symlinks(ctx):
    os.symlink("src", os.path.join(ctx, "link-to-src"))
    os.symlink("index.js", os.path.join(ctx, "src/alias.js"))
    top = ck.context_records(ctx, ["link-to-src"])
    assert top[0][1] == "d"     # the source itself is followed
    inner = {r[0]: r for r in top}
    assert inner["link-to-src/alias.js"][1:] == ["l", inner["link-to-src/alias.js"][2],
                                                 "index.js"]
    k = digest(ctx, "COPY src /s/\n")
    os.remove(os.path.join(ctx, "src/alias.js"))
    os.symlink("util.js", os.path.join(ctx, "src/alias.js"))
    assert digest(ctx, "COPY src /s/\n") != k


def test_non_context_sources(ctx):
    assert ck.sources_digest(ins("COPY --from=build /out /out\n"), None) is None
    add = ins("ADD https://example.com/a.tgz /\n")
    a = ck.sources_digest(add, None)
    b = ck.sources_digest(ins("ADD https://example.com/b.tgz /\n"), None)
    assert a != b
    heredoc = ins("COPY <<EOF /f\nhello\nEOF\n")
    assert ck.sources_digest(heredoc, None) is not None
    assert ck.step_key(BASE, heredoc) != ck.step_key(
        BASE, ins("COPY <<EOF /f\nbye\nEOF\n"))
    with pytest.raises(DockerfileError):
        ck.sources_digest(ins("COPY a /\n"), None)


def test_memo_avoids_rehashing(ctx, monkeypatch):
    memo: dict = {}
    first = digest(ctx, "COPY . .\n", memo=memo)
    assert memo
    calls = []
    real = ck.file_digest
    monkeypatch.setattr(ck, "file_digest", lambda p: calls.append(p) or real(p))
    assert digest(ctx, "COPY . .\n", memo=memo) == first
    assert calls == []


def test_chain_through_a_plan(ctx):
    """How the executor strings keys together: each step's key is the next one's parent."""
    text = ("FROM node:18\nWORKDIR /app\nCOPY package.json yarn.lock ./\n"
            "RUN yarn install --production\nCOPY . .\nCMD [\"node\", \"src/index.js\"]\n")

    def keys():
        p = plan(parse(text), build_platform="linux/amd64")
        key = ck.base_key(p.stages[0].base.ref, platform="linux/amd64")
        out = []
        for step in p.walk(0, ["PATH=/usr/bin"]):
            src = None
            if step.expanded.NAME in ("COPY", "ADD"):
                src = ck.sources_digest(step.expanded, ctx)
            key = ck.step_key(key, step.expanded, args=step.args, sources=src)
            out.append(key)
        return out

    first = keys()
    assert len(set(first)) == 5
    write(ctx, "src/index.js", "console.log('edited')")
    second = keys()
    # dependencies stay cached; the source copy and everything after it do not
    assert first[:3] == second[:3] and first[3] != second[3] and first[4] != second[4]
