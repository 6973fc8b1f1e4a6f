"""Unit tests (plain directories, no cgroupfs) of how a container's cgroup is entered and
undone: what create() made and discard() removes, exec --cgroup's parsing and sub-paths,
and the device access letters runc accepts."""

from __future__ import annotations

import os

import pytest

from runtime.cgroups.common import enter_dir, made_dirs, sub_path
from runtime.cgroups.resources_v1 import device_access, device_rule
from runtime.cgroups.v1 import V1Manager
from runtime.errors import PyruncError
from runtime.verbs.cli import parse_exec_cgroup


def _mgr(tmp_path) -> V1Manager:
    paths = {"pids": str(tmp_path / "pids/top/ct"), "memory": str(tmp_path / "memory/top/ct"),
             "cpu": str(tmp_path / "cpu,cpuacct/top/ct"),
             "cpuacct": str(tmp_path / "cpu,cpuacct/top/ct"),
             "unified": str(tmp_path / "unified/top/ct")}
    return V1Manager(paths, {})


def test_discard_removes_only_what_create_made(tmp_path):
    os.makedirs(tmp_path / "pids/top/ct")  # another container's cgroup, already there
    os.makedirs(tmp_path / "memory")
    (tmp_path / "pids/top/ct/keep").write_text("")
    m = _mgr(tmp_path)
    m.create()
    assert str(tmp_path / "pids/top/ct") not in m.made
    assert m.made.index(str(tmp_path / "memory/top")) < m.made.index(
        str(tmp_path / "memory/top/ct"))
    os.makedirs(tmp_path / "memory/top/ct/sub")  # a sub-cgroup made meanwhile goes too
    m.discard()
    assert os.path.isfile(tmp_path / "pids/top/ct/keep")
    assert sorted(os.listdir(tmp_path)) == ["memory", "pids"]  # the two that were there
    assert not os.listdir(tmp_path / "memory")


def test_made_dirs_parents_first(tmp_path):
    assert made_dirs(str(tmp_path / "a/b")) == [str(tmp_path / "a"), str(tmp_path / "a/b")]
    assert made_dirs(str(tmp_path)) == []


@pytest.mark.parametrize("sub,ok", [("x", True), ("/", True), ("a/..", True), ("/x/y", True),
                                    ("..", False), ("a/../..", False), ("/a/../..", False),
                                    ("../ct-sibling", False)])
def test_sub_path_stays_below(sub, ok):
    if ok:
        assert sub_path("/cg/ct", sub).startswith("/cg/ct")
    else:
        with pytest.raises(PyruncError, match="is not a sub cgroup path"):
            sub_path("/cg/ct", sub)


def test_exec_cgroup_flags_as_runc_reads_them():
    assert parse_exec_cgroup(["sub"]) == {"": "sub"}
    assert parse_exec_cgroup(["cpu,cpuacct:x", "memory:y", "memory:z"]) == {
        "cpu": "x", "cpuacct": "x", "memory": "z"}
    assert parse_exec_cgroup(["pids:"]) == {"pids": ""}
    with pytest.raises(PyruncError, match="invalid --cgroup argument: a:b:c"):
        parse_exec_cgroup(["a:b:c"])


def test_plan_per_controller_and_co_mounted(tmp_path):
    m = _mgr(tmp_path)
    plan = dict(m.plan({"memory": "m", "cpu": "c"}))
    assert plan[str(tmp_path / "memory/top/ct/m")] == "tasks"
    assert plan[str(tmp_path / "cpu,cpuacct/top/ct/c")] == "tasks"  # cpuacct shares it
    assert plan[str(tmp_path / "pids/top/ct")] == "tasks"
    assert plan[str(tmp_path / "unified/top/ct")] == "cgroup.procs"
    skip = {str(tmp_path / "unified/top/ct")}
    assert str(tmp_path / "unified/top/ct") not in dict(m.plan(None, skip))
    with pytest.raises(PyruncError, match="unknown controller whaaat"):
        m.plan({"whaaat": "/"})
    with pytest.raises(PyruncError, match=r"\.\. is not a sub cgroup path"):
        m.plan({"": ".."})


def test_enter_a_missing_sub_cgroup_names_it(tmp_path):
    with pytest.raises(PyruncError, match=r"adding pid 42 .*/nonexistent/cgroup\.procs: "
                                          "no such file"):
        enter_dir(str(tmp_path / "nonexistent"), "tasks", 42)


@pytest.mark.parametrize("access,want", [("rwm", "rwm"), ("rwa", "rw"), ("mwr", "rwm"),
                                         ("a", None), ("", "rwm"), (None, "rwm"), (7, None)])
def test_device_access_letters(access, want):
    if want is None:
        with pytest.raises(PyruncError, match="access"):
            device_access(access)
    else:
        assert device_access(access) == want
        assert device_rule({"type": "c", "major": 1, "minor": 11, "access": access}) == \
            f"c 1:11 {want}"


def test_v2_plan_and_freeze_state(tmp_path):
    """cgroup v2 (a plain directory standing in): one hierarchy, so --cgroup takes no
    controller; frozen is its own cgroup.freeze or an inherited `frozen 1` event."""
    from runtime.cgroups.v2 import V2Manager
    d = tmp_path / "ct"
    d.mkdir()
    m = V2Manager(str(d), str(tmp_path))
    assert m.plan() == [(str(d), "cgroup.procs")]
    assert m.plan({"": "sub"}) == [(str(d / "sub"), "cgroup.procs")]
    assert m.plan(None, {str(d)}) == []
    with pytest.raises(PyruncError, match="controller name"):
        m.plan({"memory": "x"})
    assert not m.would_freeze()
    (d / "cgroup.freeze").write_text("0\n")
    (d / "cgroup.events").write_text("populated 0\nfrozen 1\n")  # a frozen parent
    assert m.would_freeze()
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not m.would_freeze()
    (d / "cgroup.freeze").write_text("1\n")
    assert m.would_freeze()
