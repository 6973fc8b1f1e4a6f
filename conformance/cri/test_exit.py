"""How a container's end is reported: its exit code and reason (Completed / Error), the
finish time; a command that cannot start (StartContainer fails, nothing is left behind)."""

from __future__ import annotations

import grpc
import pytest

from conformance.cri.client import pb


@pytest.mark.parametrize("code,reason", [(0, "Completed"), (7, "Error")])
def test_exit_code_and_reason(pods, handler, code, reason):
    pod = pods.run(handler, f"exit{code}")
    cid = pods.start(pod, "job", ["sh", "-c", f"echo bye; exit {code}"])
    st = pods.wait_exited(cid)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, code, reason), st
    # (no order between the two: containerd stamps started_at after Start returns, and a
    # quick process may have exited by then)
    assert st.finished_at > 0 and st.started_at > 0
    listed = pods.cri.list_containers(id=cid)
    assert [c.state for c in listed] == [pb.CONTAINER_EXITED]
    assert [x for _, _, x in pods.log_lines(pod, "job")] == ["bye"]
    pods.cri.remove(cid)
    assert pods.cri.list_containers(id=cid) == []


def test_start_failure_leaves_nothing(pods, handler, cri_cluster):
    """A container whose command does not exist fails at StartContainer; it is reported as
    exited with a start error, and removing it leaves no runtime state, cgroup or mount."""
    pod = pods.run(handler, "badcmd")
    cid = pods.create(pod, "bad", ["/no/such/binary"])
    with pytest.raises(grpc.RpcError) as e:
        pods.cri.start(cid)
    assert "/no/such/binary" in e.value.details(), e.value.details()
    st = pods.status(cid)
    assert st.state == pb.CONTAINER_EXITED, st
    assert st.exit_code == 128 and st.reason == "StartError", st
    pods.cri.remove(cid)
    assert cid not in cri_cluster.runtime_states(handler)
    leftovers = [d for d in cri_cluster.cgroup_dirs(f"{pod.cgroup_rel}/{cid}")]
    assert leftovers == [], leftovers
    # the pod itself still works
    ok = pods.start(pod, "good", ["sh", "-c", "exit 0"])
    assert pods.wait_exited(ok).exit_code == 0
