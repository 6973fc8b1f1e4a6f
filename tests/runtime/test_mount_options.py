"""Mount option parsing for the recursive (mount_setattr) options, and the mountinfo
helpers of the rootfs code. The effects are checked with real containers in
conformance/test_rootfs_diff.py."""

from __future__ import annotations

import pytest

from runtime.linux import syscalls as sc
from runtime.linux.mounts import has_mount_setattr, parse_options
from runtime.linux.rootfs import _mountinfo, _unescape


@pytest.mark.parametrize("options,set_,clr", [
    (["rro"], sc.MOUNT_ATTR_RDONLY, 0),
    (["rro", "rrw"], 0, sc.MOUNT_ATTR_RDONLY),
    (["rrw", "rro"], sc.MOUNT_ATTR_RDONLY, 0),
    (["rnosuid", "rnodev", "rnoexec"],
     sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC, 0),
    (["rnoexec", "rexec"], 0, sc.MOUNT_ATTR_NOEXEC),
    (["rnosymfollow"], sc.MOUNT_ATTR_NOSYMFOLLOW, 0),
    (["rnoatime"], sc.MOUNT_ATTR_NOATIME, sc.MOUNT_ATTR__ATIME),
    (["rnoatime", "rrelatime"], sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR__ATIME),
    (["rstrictatime", "rnostrictatime"], sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR__ATIME),
    (["ratime"], sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR__ATIME),
    (["rnorelatime"], sc.MOUNT_ATTR_STRICTATIME, sc.MOUNT_ATTR__ATIME),
    (["rnodiratime", "rnoatime"], sc.MOUNT_ATTR_NODIRATIME | sc.MOUNT_ATTR_NOATIME,
     sc.MOUNT_ATTR__ATIME),
])
def test_recursive_options(options, set_, clr):
    o = parse_options(["rbind", *options])
    assert (o.rec_set, o.rec_clr) == (set_, clr)
    assert o.rec_opts == options and not o.data
    assert o.flags == sc.MS_BIND | sc.MS_REC  # nothing recursive leaks into mount(2) flags


def test_plain_options_stay_per_mount():
    o = parse_options(["bind", "ro", "nosymfollow", "noexec"])
    assert o.flags == sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSYMFOLLOW | sc.MS_NOEXEC
    assert not o.rec_opts and o.rec_set == o.rec_clr == 0


def test_mount_setattr_probe_matches_the_kernel():
    import os
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if release < (5, 12):
        pytest.skip("an older kernel (a backport may or may not have the syscall)")
    assert has_mount_setattr()


def test_mountinfo_unescape():
    assert _unescape("/a\\040b\\011c\\134d") == "/a b\tc\\d"
    assert _unescape("/plain") == "/plain"
    points = [mp for _root, mp, _opt, _fs in _mountinfo()]
    assert "/" in points and "/proc" in points
