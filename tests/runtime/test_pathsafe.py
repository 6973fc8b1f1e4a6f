"""Mount targets stay inside the rootfs whatever symlinks the image holds (CVE-2021-30465)."""

from __future__ import annotations

import os

import pytest

from runtime.errors import PyruncError
from runtime.linux.pathsafe import is_inside, open_inside, secure_join


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "data").mkdir()
    os.symlink("/etc/../../../../tmp", r / "abs-escape")
    os.symlink("../../../../", r / "etc" / "rel-escape")
    os.symlink("data", r / "link-to-data")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return str(r)


def test_secure_join_keeps_everything_inside(root):
    assert secure_join(root, "/etc/passwd") == f"{root}/etc/passwd"
    assert secure_join(root, "/../../etc") == f"{root}/etc"
    assert secure_join(root, "/abs-escape/x") == f"{root}/tmp/x"
    assert secure_join(root, "/etc/rel-escape/y") == f"{root}/y"
    assert secure_join(root, "/link-to-data/z") == f"{root}/data/z"
    with pytest.raises(PyruncError, match="symbolic links"):
        secure_join(root, "/loop1/x")


def test_open_inside_refuses_a_path_outside(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(PyruncError, match="outside the rootfs"):
        open_inside(root, str(outside))
    fd = open_inside(root, f"{root}/data")
    os.close(fd)
    assert is_inside(root, f"{root}/data") and not is_inside(root, f"{root}x/data")


def test_symlinked_mount_target_lands_inside_rootfs(pyrunc, bundle, tmp_path):
    """An image symlink /evil -> <a host dir> must not put the container's mount there."""
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "marker").write_text("host")
    os.symlink(str(host_dir), os.path.join(bundle.rootfs, "evil"))
    bundle.config["mounts"].append({"destination": "/evil", "type": "tmpfs",
                                    "source": "tmpfs", "options": ["size=1m"]})
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["args"] = ["sh", "-c", "grep ' tmpfs ' /proc/self/mountinfo | "
                                        "cut -d' ' -f5"]
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id())
    assert p.returncode == 0, p.stderr
    mountpoints = p.stdout.decode().split()
    assert str(host_dir) in mountpoints  # the path as the container sees it, inside its root
    assert (host_dir / "marker").read_text() == "host"
    inside = os.path.join(bundle.rootfs, str(host_dir).lstrip("/"))
    assert os.path.isdir(inside)  # created under the rootfs, not on the host


def test_bind_source_symlink_escape_via_dotdot(pyrunc, bundle):
    bundle.config["mounts"].append({"destination": "/../../../../mnt-escape", "type": "tmpfs",
                                    "source": "tmpfs"})
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["args"] = ["sh", "-c", "grep -c ' /mnt-escape ' "
                                        "/proc/self/mountinfo"]
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id())
    assert p.returncode == 0 and p.stdout.strip() == b"1"
    assert not os.path.exists("/mnt-escape")


def test_mkdir_all_inside_never_creates_outside(root, tmp_path):
    from runtime.linux.pathsafe import mkdir_all_inside
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(root, "link-out"))
    made = mkdir_all_inside(root, "/link-out/b/c")
    assert made == os.path.join(root, str(outside).lstrip("/"), "b", "c")
    assert os.path.isdir(made) and not (outside / "b").exists()
    assert mkdir_all_inside(root, "/etc/rel-escape/new") == os.path.join(root, "new")
    (tmp_path / "root" / "etc" / "file").write_text("x")
    with pytest.raises(PyruncError, match="not a directory"):
        mkdir_all_inside(root, "/etc/file/sub")
