"""The comparison machinery itself: a probe script's sections survive the round trip, the
normalisers drop only run-specific noise, and a real difference is reported."""

from __future__ import annotations

import subprocess

from conformance import observe
from tests.rig import BUSYBOX

MI_A = ("65 43 254:0 /tmp/b1/rootfs / ro,relatime - ext4 /dev/vda rw,discard\n"
        "72 71 0:45 /conf1 /sys/fs/cgroup/cpu ro,nosuid,relatime shared:5 - cgroup cgroup rw,cpu\n"
        "44 66 0:40 /bus /proc/bus ro,relatime - proc proc rw\n")
MI_B = ("81 12 254:0 /tmp/b2/rootfs / ro,relatime - ext4 /dev/vda rw,discard\n"
        "40 66 0:52 /bus /proc/bus relatime,ro - proc proc rw\n"
        "90 71 0:46 /conf2 /sys/fs/cgroup/cpu nosuid,ro,relatime shared:9 - cgroup systemd "
        "rw,cpu\n")


def test_script_sections_and_exit_status():
    text = observe.script(["cwd"], {"fails": "echo out; echo err >&2; exit 4", "empty": "true"})
    out = subprocess.run([BUSYBOX, "sh", "-c", text], capture_output=True, text=True,
                         cwd="/", check=True).stdout
    got = observe.parse(out)
    assert got == {"cwd": {"out": "/", "rc": 0}, "fails": {"out": "out\nerr", "rc": 4},
                   "empty": {"out": "", "rc": 0}}


def test_mountinfo_drops_ids_roots_and_order_but_not_options():
    a, b = observe.mountinfo(MI_A), observe.mountinfo(MI_B)
    assert a == b
    assert a[0] == "/ ext4 /dev/vda relatime,ro - discard,rw"
    assert "shared" in a[2]
    changed = observe.mountinfo(MI_B.replace("nosuid,ro,relatime", "ro,relatime"))
    assert changed != a


def test_cgroup_tmpfs_rw_quirk_is_the_only_one_ignored():
    ro = "31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    rw = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755\n"
    assert observe.mountinfo(ro) == observe.mountinfo(rw)
    assert observe.mountinfo(ro.replace("/sys/fs/cgroup", "/x")) != \
        observe.mountinfo(rw.replace("/sys/fs/cgroup", "/x"))


def test_differences_names_the_key_and_both_sides():
    ref = observe.normalise({"env": {"out": "A=1\nID=c1", "rc": 0}}, {"c1": "<ID>"})
    same = observe.normalise({"env": {"out": "ID=c2\nA=1", "rc": 0}}, {"c2": "<ID>"})
    other = observe.normalise({"env": {"out": "A=2\nID=c2", "rc": 0}}, {"c2": "<ID>"})
    assert observe.differences(ref, same) == ""
    diff = observe.differences(ref, other)
    assert "runc:env" in diff and "pyrunc:env" in diff
    assert '-  "A=1"' in diff and '+  "A=2"' in diff
