"""imagetool.layer.resolve: the in-root path resolver on real directory trees with symlinks."""

from __future__ import annotations

import os

import pytest

from imagetool.layer import LayerError, UnsafeLayer
from imagetool.layer.resolve import MAX_LINKS, Resolver, read_file_in, split_name


@pytest.fixture
def tree(tmp_path):
    """root/ with etc/passwd, abs -> /etc (absolute: restarts at the root), rel -> ../root/etc
    (climbs out), loop -> loop, and a file outside the root the escapes would reach."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "usr" / "lib").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../root/etc", root / "rel")
    os.symlink("loop", root / "loop")
    os.symlink("../usr/lib", root / "usr" / "lib64")
    (tmp_path / "secret").write_text("outside")
    os.symlink("/../../secret", root / "clamp")
    return str(root)


@pytest.mark.parametrize("name,error", [("/etc/x", UnsafeLayer), ("a/../../x", UnsafeLayer),
                                        ("a/\0b", LayerError)])
def test_split_name_refuses_unsafe_names(name, error):
    with pytest.raises(error):
        split_name(name)


def test_split_name_drops_dots_and_empty_components():
    assert split_name("./a//b/./c/") == ["a", "b", "c"]


def test_symlinks_resolve_inside_the_root(tree):
    res = Resolver(tree)
    assert res.directory(["abs"], False, "e") == "etc"
    assert res.directory(["usr", "lib64"], False, "e") == "usr/lib"
    path, st = res.existing(["abs"], "e")            # the last component is not followed
    assert path == os.path.join(tree, "abs") and os.path.islink(path)
    assert res.follow("/abs/passwd", "e") == os.path.join(tree, "etc", "passwd")


def test_escapes_and_loops_are_refused(tree):
    res = Resolver(tree)
    with pytest.raises(UnsafeLayer, match="outside the rootfs"):
        res.directory(["rel"], False, "e")
    with pytest.raises(LayerError, match="symbolic links"):
        res.directory(["loop"], False, "e")
    assert MAX_LINKS == 40


def test_missing_parents_are_made_only_when_asked(tree):
    res = Resolver(tree)
    with pytest.raises(LayerError, match="does not exist"):
        res.directory(["new", "sub"], False, "e")
    assert res.directory(["abs", "new"], True, "e") == "etc/new"
    assert os.path.isdir(os.path.join(tree, "etc", "new"))
    assert res.implicit == ["etc/new"]


def test_read_file_in(tree):
    assert read_file_in(tree, "/abs/passwd").startswith(b"root:")
    assert read_file_in(tree, "/etc/missing") is None
    assert read_file_in(tree, "/etc") is None                 # not a regular file
    with pytest.raises(UnsafeLayer):
        read_file_in(tree, "/clamp")
    with pytest.raises(LayerError, match="larger than"):
        read_file_in(tree, "/etc/passwd", limit=4)


def test_errors_keep_their_words_on_the_shared_resolver(tree):
    """Layer's messages as before runtime/linux/inroot.py took the walking over: a link the
    path goes through vs one follow() reads at its end; a file on the way; a missing file."""
    res = Resolver(tree, "L")
    with pytest.raises(UnsafeLayer, match=r"^L: e: goes through the symlink /rel -> "
                                          r"\.\./root/etc, which leads outside the rootfs"):
        res.follow("/rel/passwd", "e")
    with pytest.raises(UnsafeLayer, match=r"^L: e: the symlink /clamp -> /\.\./\.\./secret "
                                          r"leads outside the rootfs$"):
        res.follow("/clamp", "e")
    with pytest.raises(LayerError, match=r"^L: e: too many symbolic links$"):
        res.follow("/loop", "e")
    with pytest.raises(LayerError, match=r"^L: e: too many levels of symbolic links$"):
        res.directory(["loop"], True, "e")
    with pytest.raises(LayerError, match=r"^L: e: /etc/passwd is not a directory$"):
        res.directory(["abs", "passwd", "x"], True, "e")
    with pytest.raises(FileNotFoundError):
        res.follow("/abs/missing", "e")
    with pytest.raises(LayerError, match=r"^L: e: /etc/missing does not exist$"):
        res.follow("/abs/missing/x", "e")
    assert not os.path.exists(os.path.join(tree, "etc", "missing"))
