"""runtime.linux.inroot, the one in-root resolver, in both modes on real trees (no root needed).

Its callers' own tests: tests/runtime/test_pathsafe.py (clamp, mount targets),
tests/imagetool/layer/test_resolve.py (refuse, strict) and the builder's COPY tests
(clamp, build context).
"""

from __future__ import annotations

import os

import pytest

from runtime.linux.inroot import (
    CLAMP,
    REFUSE,
    Escape,
    InRoot,
    InRootError,
    NotADirectory,
    TooManyLinks,
)


@pytest.fixture
def root(tmp_path):
    """root/ with etc/passwd, usr/lib, a file, links of every kind, and a file outside
    (`secret`) the escaping links would reach if they were followed by the host."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0\n")
    (r / "usr" / "lib").mkdir(parents=True)
    (r / "file").write_text("x")
    (tmp_path / "secret").write_text("outside")
    os.symlink("/etc", r / "abs")                   # absolute: restarts at the root
    os.symlink("/etc/passwd", r / "usr" / "pw")     # absolute, met below the root
    os.symlink("../usr/lib", r / "usr" / "lib64")  # relative, stays inside
    os.symlink("../secret", r / "up")               # relative, climbs out
    os.symlink("/../../secret", r / "absup")        # absolute, climbs out
    os.symlink("abs/passwd", r / "chain")           # a link through a link
    os.symlink("loop", r / "loop")
    os.symlink("ping", r / "pong")
    os.symlink("pong", r / "ping")
    os.symlink("nowhere/deeper", r / "dangling")
    return str(r)


def walk(root: str, path: str, **kw) -> str:
    mode = kw.pop("mode", CLAMP)
    return InRoot(root, mode=mode, **{k: v for k, v in kw.items()
                                      if k in ("max_links", "strict", "on_missing",
                                               "tolerate")}).walk(
        path.split("/"), **{k: v for k, v in kw.items()
                            if k in ("start", "follow_last", "dir_last")})


@pytest.mark.parametrize("mode", [CLAMP, REFUSE])
def test_links_that_stay_inside_resolve_alike_in_both_modes(root, mode):
    assert walk(root, "/abs/passwd", mode=mode) == "etc/passwd"
    assert walk(root, "usr/lib64", mode=mode) == "usr/lib"
    assert walk(root, "usr/pw", mode=mode) == "etc/passwd"
    assert walk(root, "/chain", mode=mode) == "etc/passwd"
    assert walk(root, "./etc//./passwd", mode=mode) == "etc/passwd"
    assert walk(root, "/", mode=mode) == ""
    assert walk(root, "usr/lib64/../../etc", mode=mode) == "etc"   # '..' after the link
    assert walk(root, "etc/../usr", mode=mode) == "usr"


def test_clamp_keeps_dotdot_at_the_root(root):
    assert walk(root, "/../../etc") == "etc"
    assert walk(root, "up") == "secret"        # ../secret from / is /secret inside the root
    assert walk(root, "absup") == "secret"
    assert walk(root, "/up/x") == "secret/x"
    assert not os.path.exists(os.path.join(root, "secret"))  # resolving creates nothing


@pytest.mark.parametrize("path,link,target", [("up", "up", "../secret"),
                                              ("absup/x", "absup", "/../../secret"),
                                              ("../etc", "", None)])
def test_refuse_raises_escape_naming_the_link(root, path, link, target):
    with pytest.raises(Escape) as info:
        walk(root, path, mode=REFUSE)
    assert (info.value.link, info.value.target) == (link, target)
    assert isinstance(info.value, InRootError)


@pytest.mark.parametrize("mode", [CLAMP, REFUSE])
@pytest.mark.parametrize("path", ["loop", "ping/x", "etc/../pong"])
def test_loops_stop_at_max_links(root, mode, path):
    with pytest.raises(TooManyLinks):
        walk(root, path, mode=mode)


def test_max_links_is_the_number_of_links_allowed(root, tmp_path):
    for i in range(5):                       # c0 -> c1 -> ... -> c4 -> etc: five links
        os.symlink(f"c{i + 1}" if i < 4 else "etc", os.path.join(root, f"c{i}"))
    assert walk(root, "c0", max_links=5) == "etc"
    with pytest.raises(TooManyLinks):
        walk(root, "c0", max_links=4)


def test_missing_components_are_kept_as_names_by_default(root):
    assert walk(root, "new/sub/../x") == "new/x"
    assert walk(root, "dangling/y") == "nowhere/deeper/y"
    assert walk(root, "file/sub") == "file/sub"          # under a file: not strict
    assert not os.path.exists(os.path.join(root, "new"))


def test_on_missing_sees_each_missing_component_and_may_create_it(root):
    seen = []

    def make(parent: str, name: str, at_end: bool) -> None:
        seen.append((parent, name, at_end))
        os.mkdir(os.path.join(root, parent, name))

    r = InRoot(root, mode=REFUSE, strict=True, on_missing=make)
    assert r.walk(["abs", "new", "sub"], dir_last=True) == "etc/new/sub"
    assert seen == [("etc", "new", False), ("etc/new", "sub", True)]
    assert os.path.isdir(os.path.join(root, "etc", "new", "sub"))

    def refuse(parent: str, name: str, at_end: bool) -> None:
        raise LookupError(f"{parent}/{name}")

    with pytest.raises(LookupError, match="nowhere"):   # a dangling link's target too
        InRoot(root, on_missing=refuse).walk(["dangling"])


@pytest.mark.parametrize("mode", [CLAMP, REFUSE])
def test_last_component_followed_or_not(root, mode):
    assert walk(root, "abs", mode=mode) == "etc"
    assert walk(root, "abs", mode=mode, follow_last=False) == "abs"
    assert walk(root, "abs/../chain", mode=mode, follow_last=False) == "chain"
    # only the last one: a link on the way is still followed
    assert walk(root, "abs/passwd", mode=mode, follow_last=False) == "etc/passwd"
    assert walk(root, "loop", mode=mode, follow_last=False) == "loop"
    assert walk(root, "missing", mode=mode, follow_last=False) == "missing"


def test_strict_wants_directories_on_the_way(root):
    strict = InRoot(root, mode=REFUSE, strict=True)
    assert strict.walk(["abs", "passwd"]) == "etc/passwd"     # the last may be a file
    with pytest.raises(NotADirectory) as info:
        strict.walk(["abs", "passwd"], dir_last=True)
    assert info.value.rel == "etc/passwd"
    with pytest.raises(NotADirectory) as info:
        strict.walk(["file", "sub"])
    assert info.value.rel == "file"
    with pytest.raises(NotADirectory):
        strict.walk(["chain", "x"])                           # a link to a file, then more


def test_errors_say_whether_the_link_ends_the_path(root):
    os.symlink("up", os.path.join(root, "toup"))
    with pytest.raises(Escape) as info:
        walk(root, "up", mode=REFUSE)
    assert info.value.at_end
    with pytest.raises(Escape) as info:
        walk(root, "up/x", mode=REFUSE)
    assert not info.value.at_end
    with pytest.raises(TooManyLinks) as info:
        walk(root, "loop", mode=REFUSE)
    assert info.value.at_end and info.value.link == "loop"


def test_step_from_a_resolved_start_and_links_counted_across_steps(root):
    r = InRoot(root, max_links=1)
    assert r.walk(["lib64"], start="usr") == "usr/lib"
    assert r.links == 1
    with pytest.raises(TooManyLinks):      # step() does not reset the count; walk() does
        r.step("usr", "lib64")
    r.links = 0
    assert r.step("", "abs", follow=False) == "abs"
    assert r.walk(["abs"]) == "etc"


def test_tolerated_errors_count_as_missing(root):
    with pytest.raises(ValueError):
        InRoot(root).walk(["bad\0name"])
    r = InRoot(root, tolerate=(OSError, ValueError))
    assert r.walk(["bad\0name"]) == "bad\0name"
    assert r.walk(["x" * 300, "y"]) == "x" * 300 + "/y"       # ENAMETOOLONG


def test_host_paths_and_bad_mode(root):
    assert InRoot(root).host("") == root
    assert InRoot(root).host("etc") == f"{root}/etc"
    assert InRoot(root + "/").host("etc") == f"{root}/etc"
    assert InRoot("/").host("etc") == "/etc"
    with pytest.raises(ValueError, match="mode"):
        InRoot(root, mode="chroot")
