"""Slice 2: subordinate ids and the user namespace imagetool enters (newuidmap/newgidmap)."""

from __future__ import annotations

import json
import os

import pytest

from imagetool.rootless import subids
from tests.imagetool.rootless.conftest import SUBRANGE

ENTER = """
import json, os
from imagetool.rootless import subids, userns
m = subids.plan()
if m.warning:
    print("WARN " + m.warning, file=sys.stderr)
userns.enter(m)
res = {"uid": os.getuid(), "map": open("/proc/self/uid_map").read().split()}
for owner in (1000, 65534):
    p = os.path.join(os.environ["HOME"], f"f{owner}")
    open(p, "w").close()
    try:
        os.chown(p, owner, owner)
        res[str(owner)] = list(os.stat(p)[4:6])
    except OSError as e:
        res[str(owner)] = e.strerror
print(json.dumps(res))
"""


def test_ranges_and_rows(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("# comment\nalice:100000:65536\nbob:200000:10\n1234:300000:5\n")
    assert subids.ranges(str(f), "alice", 1) == [(100000, 65536)]
    assert subids.ranges(str(f), "carol", 1234) == [(300000, 5)]
    assert subids.ranges(str(f), "nobody-here", 9) == []
    assert subids.ranges(str(tmp_path / "missing"), "alice", 1) == []
    m = subids.plan(5000, 5001, "alice", str(f), str(f))
    assert m.full and m.uids == [(0, 5000, 1), (1, 100000, 65536)]
    assert m.gids == [(0, 5001, 1), (1, 100000, 65536)]


def test_bad_line_names_file_and_line(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("alice:x:65536\n")
    with pytest.raises(subids.SubidError, match=r"subuid:1: not NAME:START:COUNT"):
        subids.ranges(str(f), "alice", 1)


def test_no_range_falls_back_with_the_command(tmp_path):
    f = tmp_path / "subgid"
    f.write_text("")
    m = subids.plan(5000, 5000, "alice", str(f), str(f))
    assert not m.full and m.uids == [(0, 5000, 1)]
    assert str(f) in m.warning
    assert "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice" in m.warning
    with pytest.raises(subids.SubidError, match="/etc/subuid.*usermod --add-subuids"):
        subids.require_full(m, "alice")


def test_user_with_range_maps_other_owners(subuser):
    r = subuser.py(ENTER)
    assert r.returncode == 0, r.stderr
    assert "WARN" not in r.stderr
    res = json.loads(r.stdout)
    assert res["uid"] == 0
    start, count = SUBRANGE
    assert res["map"] == ["0", str(subuser.uid), "1", "1", str(start), str(count)]
    assert res["1000"] == [1000, 1000] and res["65534"] == [65534, 65534]
    # seen from the host: the subordinate ids
    st = os.stat(os.path.join(subuser.home, "f1000"))
    assert (st.st_uid, st.st_gid) == (start + 999, start + 999)
    st = os.stat(os.path.join(subuser.home, "f65534"))
    assert (st.st_uid, st.st_gid) == (start + 65533, start + 65533)


def test_user_without_range_gets_single_id_and_a_warning(ruser):
    r = ruser.py(ENTER)
    assert r.returncode == 0, r.stderr
    assert "WARN no subordinate ids for itool-rl-plain in /etc/subuid" in r.stderr
    assert "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 itool-rl-plain" \
        in r.stderr
    res = json.loads(r.stdout)
    assert res["uid"] == 0 and res["map"] == ["0", str(ruser.uid), "1"]
    assert res["1000"] == "Invalid argument"  # unmapped: the file stays the user's
    assert os.stat(os.path.join(ruser.home, "f1000")).st_uid == ruser.uid


def test_newuidmap_refusal_is_one_line(ruser):
    code = ("from imagetool.rootless import subids, userns\n"
            "userns.enter(subids.IdMap([(0, os.getuid(), 1), (1, 500000, 10)], "
            "[(0, os.getgid(), 1), (1, 500000, 10)], full=True))\nprint('inside')")
    r = ruser.py("import os\n" + code)
    assert r.returncode == 125
    assert "inside" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagetool: user namespace: newuidmap:")
