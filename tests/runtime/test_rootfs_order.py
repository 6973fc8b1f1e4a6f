"""The order of the root-building steps (rootfs.py, mounts.py), checked through the
recording syscall double: no root, nothing mounted. The real effects are tested with real
containers (test_lifecycle.py, test_mount_options.py, conformance/test_rootfs_diff.py)."""

from __future__ import annotations

import errno
import os

import pytest

from runtime.linux import mounts, rootfs
from runtime.linux import syscalls as sc
from tests.runtime.syscall_double import recording

BIND_REC = sc.MS_BIND | sc.MS_REC


def _no_shared_mounts(monkeypatch: pytest.MonkeyPatch, shared: bool = False) -> None:
    info = [("/", "/", "shared:1" if shared else "", "ext4")]
    monkeypatch.setattr(rootfs, "_mountinfo", lambda: info)


def test_pivot_privatises_then_pivots_then_detaches_old_root(tmp_path, monkeypatch):
    _no_shared_mounts(monkeypatch, shared=True)
    monkeypatch.chdir(tmp_path)  # pivot() ends with chdir("/"): put the cwd back afterwards
    with recording() as rec:
        rootfs.pivot(str(tmp_path))
    assert rec.calls == [
        ("mount", (None, "/", None, sc.MS_PRIVATE, None)),  # pivot_root refuses shared "/"
        ("pivot_root", (".", ".")),
        ("mount", (None, ".", None, sc.MS_SLAVE | sc.MS_REC, None)),  # before the unmount
        ("umount2", (".", sc.MNT_DETACH)),
    ]


def test_pivot_leaves_a_private_root_alone(tmp_path, monkeypatch):
    _no_shared_mounts(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with recording() as rec:
        rootfs.pivot(str(tmp_path))
    assert [name for name, _ in rec.calls] == ["pivot_root", "mount", "umount2"]


def test_finish_readonly_before_masks_then_dev_then_root(tmp_path):
    ro, masked_dir, masked_file = tmp_path / "ro", tmp_path / "mdir", tmp_path / "mfile"
    ro.mkdir()
    masked_dir.mkdir()
    masked_file.write_text("")
    spec = {"linux": {"readonlyPaths": [str(ro)],
                      "maskedPaths": [str(masked_dir), str(masked_file),
                                      str(tmp_path / "absent")]},
            "mounts": [{"destination": "/dev", "type": "tmpfs", "options": ["ro"]}],
            "root": {"readonly": True}}
    with recording() as rec:
        rootfs.finish(spec)
    remount = sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_BIND
    assert rec.calls == [
        ("mount", (str(ro), str(ro), None, BIND_REC, None)),
        ("mount", (None, str(ro), None, remount | mounts.locked_flags(str(ro)), None)),
        ("mount", ("tmpfs", str(masked_dir), "tmpfs", sc.MS_RDONLY, None)),
        ("mount", ("/dev/null", str(masked_file), None, sc.MS_BIND, None)),
        ("mount", (None, "/dev", None, remount | mounts.locked_flags("/dev"), None)),
        ("mount", (None, "/", None, remount | mounts.locked_flags("/"), None)),
    ]


def test_finish_skips_a_readonly_path_that_is_missing(tmp_path):
    gone = str(tmp_path / "gone")
    with recording(fail={gone: errno.ENOENT}) as rec:
        rootfs.finish({"linux": {"readonlyPaths": [gone]}})
    assert rec.calls == [("mount", (gone, gone, None, BIND_REC, None))]  # no remount


def test_finish_reports_other_readonly_failures(tmp_path):
    with recording(fail={str(tmp_path): errno.EACCES}), pytest.raises(OSError):
        rootfs.finish({"linux": {"readonlyPaths": [str(tmp_path)]}})


@pytest.mark.parametrize("prop,first,late", [
    ("", sc.MS_SLAVE | sc.MS_REC, None),
    ("rprivate", sc.MS_PRIVATE | sc.MS_REC, None),
    ("shared", sc.MS_SHARED, sc.MS_SHARED),
    # unbindable can't be set before the rootfs is bound from "/": rslave first, then it
    ("runbindable", sc.MS_SLAVE | sc.MS_REC, sc.MS_UNBINDABLE | sc.MS_REC),
])
def test_root_propagation_early_and_late(tmp_path, monkeypatch, prop, first, late):
    _no_shared_mounts(monkeypatch)
    root = tmp_path / "rootfs"
    root.mkdir()
    spec = {"linux": {"rootfsPropagation": prop}, "mounts": [],
            "process": {"cwd": "/work"}}
    with recording() as rec:
        rootfs.prepare(spec, str(root), str(tmp_path), {"userns": True})
        before_late = len(rec.calls)
        rootfs.late_propagation(spec)
    assert rec.calls[0] == ("mount", (None, "/", None, first, None))
    assert rec.calls[1] == ("mount", (str(root), str(root), None, BIND_REC, None))
    # in a user namespace the default devices are bound from the host, in the table's order
    devs = [args[0] for _, args in rec.calls[2:before_late]]
    assert devs == [path for path, *_ in rootfs.DEFAULT_DEVICES]
    assert (root / "work").is_dir()  # the missing cwd was made before root can go read-only
    assert os.path.islink(root / "dev" / "ptmx")
    assert rec.calls[before_late:] == ([("mount", (None, "/", None, late, None))]
                                       if late else [])


def test_bind_ro_is_bound_then_remounted_then_propagated(tmp_path):
    root, src = tmp_path / "rootfs", tmp_path / "src"
    root.mkdir()
    src.mkdir()
    m = {"destination": "/data", "type": "bind", "source": str(src),
         "options": ["rbind", "ro", "rprivate"]}
    with recording() as rec:
        mounts.mount_entry(m, str(root), str(tmp_path), {})
    locked = mounts.locked_flags(str(root / "data"))  # nothing is mounted there really
    assert rec.calls == [
        ("mount", (str(src), "<fd>", None, BIND_REC, None)),
        ("mount", (None, "<fd>", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | locked,
                   None)),
        ("mount", (None, "<fd>", None, sc.MS_PRIVATE | sc.MS_REC, None)),
    ]


def test_ro_tmpfs_is_mounted_writable_then_remounted(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    m = {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["ro", "nosuid", "size=1m"]}
    with recording() as rec:
        mounts.mount_entry(m, str(root), str(tmp_path), {})
    flags = sc.MS_RDONLY | sc.MS_NOSUID
    locked = mounts.locked_flags(str(root / "scratch"))
    assert rec.calls == [
        ("mount", ("tmpfs", "<fd>", "tmpfs", sc.MS_NOSUID, "size=1m")),
        ("mount", (None, "<fd>", None, sc.MS_BIND | sc.MS_REMOUNT | flags | locked, None)),
    ]


def test_a_refused_bind_names_the_mount_and_goes_no_further(tmp_path):
    from runtime.errors import PyruncError
    root, src = tmp_path / "rootfs", tmp_path / "src"
    root.mkdir()
    src.mkdir()
    m = {"destination": "/data", "type": "bind", "source": str(src), "options": ["bind", "ro"]}
    refuse_all = {f"/proc/self/fd/{n}": errno.EPERM for n in range(3, 1024)}
    with recording(fail=refuse_all) as rec, \
            pytest.raises(PyruncError, match="mount /data: cannot bind"):
        mounts.mount_entry(m, str(root), str(tmp_path), {})
    assert len(rec.calls) == 1  # no remount of a bind that never happened
