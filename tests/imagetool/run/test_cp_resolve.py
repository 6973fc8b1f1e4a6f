"""imagetool cp's container paths resolve inside the container's root (clamp mode of the
shared in-root resolver): no symlink or `..` leads to the host's files."""

import os

import pytest

from imagetool.run.cp import resolve_in
from imagetool.run.records import ContainerError


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("in the container\n")
    os.symlink("/etc", r / "abs")            # absolute: the container's /etc, not the host's
    os.symlink("../../../../etc", r / "up")  # climbs past the root: clamped to it
    os.symlink("passwd", r / "etc" / "pw")   # relative, last component
    os.symlink("loop", r / "loop")
    return str(r)


@pytest.mark.parametrize("path,follow,want", [
    ("/abs/passwd", False, "etc/passwd"),
    ("/up/passwd", False, "etc/passwd"),
    ("/../../etc/passwd", False, "etc/passwd"),
    ("/etc/pw", False, "etc/pw"),            # the last link itself, as docker cp copies it
    ("/etc/pw", True, "etc/passwd"),
    ("/abs", True, "etc"),
    ("/missing/../etc", False, "etc"),
    ("/", False, ""),
])
def test_resolves_inside(root, path, follow, want):
    got = resolve_in(root, path, follow_last=follow)
    assert got == (os.path.join(root, want) if want else root)
    assert os.path.realpath(got).startswith(os.path.realpath(root))


def test_link_loop_is_an_error(root):
    with pytest.raises(ContainerError, match="too many levels of symbolic links"):
        resolve_in(root, "/loop/x")
