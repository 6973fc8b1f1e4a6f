"""The whole CRI path kubelet drives, once per RuntimeClass handler (`pyrunc`, `runc`):
PullImage from our registry, RunPodSandbox, CreateContainer/StartContainer, the app answering
HTTP on the pod IP, ContainerStatus, ListContainers/ListPodSandbox, ContainerStats, the CRI
log file, StopContainer (grace period, then kill), RemoveContainer, StopPodSandbox and
RemovePodSandbox. The wrapper's call log proves the handler's own binary served the pod."""

from __future__ import annotations

import ipaddress
import os
import time
import urllib.request

import grpc
import pytest

from conformance.cri.client import pb
from conformance.cri.cluster import netns_names
from conformance.engines.conftest import wait_for

LOOP_TERM_0 = 'trap "exit 0" TERM; while true; do sleep 0.1; done'


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def test_image_pulled_through_cri(cri_cluster, cri_images):
    img = cri_cluster.client.image_status(cri_images["app"])
    assert img.id.startswith("sha256:"), img
    assert cri_images["app"] in img.repo_tags
    assert img.size > 0


def test_pod_lifecycle(pods, handler, cri_cluster):
    cri = pods.cri
    wrapper = cri_cluster.wrappers[handler]
    mark = wrapper.mark()
    pod = pods.run(handler, "web")
    st = cri.pod_status(pod.id).status
    assert st.state == pb.SANDBOX_READY
    assert st.runtime_handler == handler
    ip = ipaddress.ip_address(st.network.ip)
    assert ip in cri_cluster.subnet, st.network

    cid = pods.create(pod, "app")
    assert pods.status(cid).state == pb.CONTAINER_CREATED
    cri.start(cid)
    status = pods.status(cid)
    assert status.state == pb.CONTAINER_RUNNING
    assert status.started_at > 0 and status.exit_code == 0

    # the runtime calls went through this handler's binary, for the pause and the app
    subs = {(c.sub, c.argv[-1]) for c in wrapper.since(mark)}
    assert ("create", pod.id) in subs and ("create", cid) in subs, wrapper.report(mark)
    assert ("start", cid) in subs, wrapper.report(mark)

    page = wait_for(lambda: _get(f"http://{ip}:80/"), 15, f"the app on {ip}:80")
    assert b"hello from imagetool build" in page

    listed = cri.list_containers(pod_sandbox_id=pod.id)
    assert [(c.id, c.state, c.metadata.name) for c in listed] == \
        [(cid, pb.CONTAINER_RUNNING, "app")]
    sandboxes = cri.list_pods(id=pod.id)
    assert [(p.id, p.state, p.runtime_handler) for p in sandboxes] == \
        [(pod.id, pb.SANDBOX_READY, handler)]

    stats = cri.stats(cid)
    assert stats.attributes.id == cid
    assert stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.memory.working_set_bytes.value > 0

    # in the pod's pid namespace httpd is not pid 1: SIGTERM's default action ends it
    cri.stop(cid, grace=10)
    status = pods.status(cid)
    assert (status.state, status.exit_code, status.reason) == \
        (pb.CONTAINER_EXITED, 143, "Error"), status
    assert status.finished_at >= status.started_at
    cri.remove(cid)
    assert cri.list_containers(pod_sandbox_id=pod.id) == []

    netns = pods.netns(pod)
    assert os.path.basename(netns) in netns_names()
    cri.stop_pod(pod.id)
    assert cri.pod_status(pod.id).status.state == pb.SANDBOX_NOTREADY
    cri.remove_pod(pod.id)
    assert cri.list_pods(id=pod.id) == []
    pods.made.remove(pod)
    left = pods.leaks(pod, netns)
    assert not left, left


def test_stop_with_handler_exits_at_once(pods, handler):
    """A process that exits on SIGTERM stops within the grace period with its own code."""
    pod = pods.run(handler, "stop")
    cid = pods.start(pod, "term", ["sh", "-c", LOOP_TERM_0])
    t0 = time.monotonic()
    pods.cri.stop(cid, grace=10)
    assert time.monotonic() - t0 < 5
    st = pods.status(cid)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 0, "Completed"), st


def test_stop_grace_then_kill(pods, handler):
    """A process that ignores SIGTERM is killed when the grace period ends (137)."""
    pod = pods.run(handler, "grace")
    cid = pods.start(pod, "stubborn", ["sh", "-c", 'trap "" TERM; while true; do sleep 0.1; done'])
    t0 = time.monotonic()
    pods.cri.stop(cid, grace=1)
    took = time.monotonic() - t0
    assert 0.9 < took < 10, took
    st = pods.status(cid)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 137, "Error"), st


def test_log_file(pods, handler):
    pod = pods.run(handler, "logs")
    cid = pods.start(pod, "talk", ["sh", "-c", "echo out1; echo err1 >&2; echo out2"])
    st = pods.wait_exited(cid)
    assert (st.state, st.exit_code) == (pb.CONTAINER_EXITED, 0), st
    assert st.log_path.endswith("talk/0.log")
    lines = pods.log_lines(pod, "talk")
    assert [(s, t) for s, t, _ in lines if s == "stdout"] == [("stdout", "F")] * 2
    assert [x for s, _, x in lines if s == "stdout"] == ["out1", "out2"]
    assert [x for s, _, x in lines if s == "stderr"] == ["err1"]


def test_unknown_handler_is_refused(pods, cri_cluster):
    """A RuntimeClass naming no configured handler fails RunPodSandbox, making nothing."""
    before = {p.id for p in pods.cri.list_pods()}
    netns = netns_names()
    with pytest.raises(grpc.RpcError) as e:
        pods.run("no-such-handler", "nohandler")
    assert "no-such-handler" in e.value.details(), e.value.details()
    assert {p.id for p in pods.cri.list_pods()} == before
    assert netns_names() == netns
