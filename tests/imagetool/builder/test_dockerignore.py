""".dockerignore semantics (Docker's patternmatcher) and Go's filepath.Match."""

import os

import pytest

from imagetool.builder.dockerignore import DockerIgnore, PatternError, go_clean, go_match


def ign(text: str) -> DockerIgnore:
    return DockerIgnore.parse(text)


def test_file_format():
    di = ign("\ufeff# comment\n\n  *.log  \r\n/abs/path\n./rel/../other\n  # not a comment\n"
             "! keep.log\n")
    assert di.as_list() == ["*.log", "abs/path", "other", "# not a comment", "!keep.log"]


@pytest.mark.parametrize("patterns, path, excluded", [
    ("*.md", "README.md", True),
    ("*.md", "docs/README.md", False),          # * stays within one directory
    ("*/*.md", "docs/README.md", True),
    ("**/*.md", "docs/deep/README.md", True),
    ("**/*.md", "README.md", True),              # ** also matches no directory
    ("temp?", "temp1", True),
    ("temp?", "temp12", False),
    ("node_modules", "node_modules/a/b.js", True),  # a directory excludes what is below
    ("node_modules", "src/node_modules/x", False),
    ("**/node_modules", "src/node_modules/x", True),
    ("build/", "build/out.o", True),
    ("dir/**", "dir/x/y", True),
    ("dir/**", "dir", False),
    ("**", "anything/at/all", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("!README.md\n*.md", "README.md", True),     # the last match wins
    ("*\n!src\n", "src/main.go", False),
    ("*\n!src\nsrc/*.tmp", "src/x.tmp", True),
    ("file[0-9].txt", "file7.txt", True),
    ("file[^0-9].txt", "fileA.txt", True),
    ("file[^0-9].txt", "file1.txt", False),
    ("a.b", "aXb", False),                       # regexp chars are literal
    ("a+b(c)", "a+b(c)", True),
    ("\\*", "*", True),
    ("\\*", "x", False),
    ("Dockerfile\n.dockerignore", "Dockerfile", True),
    ("Dockerfile\n.dockerignore", ".dockerignore", True),
    ("**foo", "a/barfoo", True),                # Docker's suffix match quirk
    ("", ".", False),
])
def test_excluded(patterns, path, excluded):
    assert ign(patterns).excluded(path) is excluded


def test_exception_inside_excluded_directory():
    di = ign("node_modules\n!node_modules/keep/x.js\n")
    assert di.excluded("node_modules/a.js")
    assert not di.excluded("node_modules/keep/x.js")
    assert di.must_descend("node_modules") and di.must_descend("node_modules/keep")
    assert not di.must_descend("other")
    # Docker's walker only looks into an excluded directory when an exception names a path in it
    assert not ign("vendor\n!**/keep.go\n").must_descend("vendor")


@pytest.mark.parametrize("bad", ["[", "a[", "[]", "[a-]", "a\\", "!", "[\\"])
def test_bad_patterns(bad):
    with pytest.raises(PatternError):
        ign(bad)


@pytest.mark.parametrize("pattern, name, want", [
    ("*", "abc", True), ("*", "a/b", False), ("a*/b", "abc/b", True), ("a*b*c", "axxbyyc", True),
    ("?", "a", True), ("?", "/", False), ("[a-c]", "b", True), ("[^a-c]", "d", True),
    ("[^a-c]", "b", False), ("[\\]]", "]", True), ("a\\*", "a*", True), ("a\\*", "ab", False),
    ("*.go", "main.go", True), ("*.go", ".go", True), ("[!]", "!", True),
])
def test_go_match(pattern, name, want):
    assert go_match(pattern, name) is want


@pytest.mark.parametrize("bad", ["[", "[a", "\\", "[-]", "[x-]", "a[]"])
def test_go_match_bad(bad):
    with pytest.raises(PatternError):
        go_match(bad, "x")


@pytest.mark.parametrize("path, want", [
    ("", "."), ("a//b", "a/b"), ("./a/./b/", "a/b"), ("a/../../b", "../b"), ("/../a", "/a"),
    ("/", "/"), ("a/b/..", "a"),
])
def test_go_clean(path, want):
    assert go_clean(path) == want


def make_tree(root, files):
    for rel in files:
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(rel)


def test_walk(tmp_path):
    make_tree(tmp_path, ["Dockerfile", ".dockerignore", "src/a.py", "src/a.pyc",
                         "node_modules/x/y.js", "node_modules/keep/k.js", "docs/r.md"])
    di = ign("*.pyc\n**/*.md\nnode_modules\n!node_modules/keep\n.dockerignore\n")
    got = sorted(rel for rel, _ in di.walk(tmp_path))
    # `*.pyc` only covers the top directory, so src/a.pyc stays (Docker does the same)
    assert got == ["Dockerfile", "docs", "node_modules/keep", "node_modules/keep/k.js", "src",
                   "src/a.py", "src/a.pyc"]
    di = ign("**/*.pyc\n")
    assert sorted(r for r, _ in di.walk(tmp_path, "src")) == ["src/a.py"]
    assert sorted(r for r, _ in DockerIgnore().walk(tmp_path, "docs")) == ["docs/r.md"]


def test_load_prefers_dockerfile_specific_file(tmp_path):
    (tmp_path / ".dockerignore").write_text("*.log\n")
    (tmp_path / "build.Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "build.Dockerfile.dockerignore").write_text("*.tmp\n")
    assert DockerIgnore.load(tmp_path).as_list() == ["*.log"]
    assert DockerIgnore.load(tmp_path, tmp_path / "build.Dockerfile").as_list() == ["*.tmp"]
    assert DockerIgnore.load(tmp_path / "nowhere").as_list() == []
    assert not DockerIgnore.load(tmp_path / "nowhere")


def test_bad_pattern_names_file_and_line():
    with pytest.raises(PatternError) as ei:
        DockerIgnore.parse("ok\n# fine\n[broken\n", "ctx/.dockerignore")
    assert str(ei.value).startswith("ctx/.dockerignore:3: ")
