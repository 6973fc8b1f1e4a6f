"""ExecSync, as kubelet's exec probes and `kubectl exec` without a terminal use it: exit
codes, stdout and stderr apart, the container's env and working dir, the CRI timeout, a
missing binary; and an exec into a container that joined the pod's pid namespace (pause is
pid 1 there), which must see its own /proc/self. Each test runs with `pyrunc` and `runc`."""

from __future__ import annotations

import grpc
import pytest

from conformance.cri.client import pb

SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']


def test_exit_codes_and_output(pods, handler):
    pod = pods.run(handler, "exec")
    cid = pods.start(pod, "box", SLEEPER)
    r = pods.cri.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = pods.cri.exec_sync(cid, ["true"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"", b"")
    r = pods.cri.exec_sync(cid, ["sh", "-c", "kill -9 $$"])
    assert r.exit_code == 137
    # the image's WORKDIR and ENV reach exec'd processes, as they reach the container's
    r = pods.cri.exec_sync(cid, ["sh", "-c", 'pwd; echo "$GREETING"; id -u'])
    assert r.stdout.decode().splitlines() == ["/srv/www", "hello from imagetool build", "0"]
    # large output arrives whole
    r = pods.cri.exec_sync(cid, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line$i; "
                                             "i=$((i+1)); done"])
    lines = r.stdout.decode().splitlines()
    assert r.exit_code == 0 and len(lines) == 20000 and lines[-1] == "line19999"


def test_missing_binary_is_an_error(pods, handler):
    pod = pods.run(handler, "exec-missing")
    cid = pods.start(pod, "box", SLEEPER)
    with pytest.raises(grpc.RpcError) as e:
        pods.cri.exec_sync(cid, ["/no/such/binary"])
    assert "/no/such/binary" in e.value.details(), e.value.details()
    # the container is untouched
    r = pods.cri.exec_sync(cid, ["echo", "still here"])
    assert (r.exit_code, r.stdout) == (0, b"still here\n")


def test_timeout(pods, handler):
    pod = pods.run(handler, "exec-timeout")
    cid = pods.start(pod, "box", SLEEPER)
    with pytest.raises(grpc.RpcError) as e:
        pods.cri.exec_sync(cid, ["sleep", "30"], timeout=1)
    assert "timeout" in e.value.details(), e.value.details()
    # the timed-out process is gone: only the container's own processes remain
    r = pods.cri.exec_sync(cid, ["ps", "-o", "args"])
    assert r.exit_code == 0 and "sleep 30" not in r.stdout.decode(), r


@pytest.mark.parametrize("pid_mode", ["POD", "CONTAINER"])
def test_exec_in_pod_pid_namespace(pods, handler, pid_mode):
    """With pid=POD the container joined the sandbox's pid namespace: pause is pid 1, and an
    exec'd process sees its own status in /proc/self/status (its pid as the pod's namespace
    numbers it). With pid=CONTAINER the container's own process is pid 1."""
    pod = pods.run(handler, f"pidns-{pid_mode.lower()}", pid=pid_mode)
    cid = pods.start(pod, "box", SLEEPER)
    r = pods.cri.exec_sync(cid, ["sh", "-c", "cat /proc/self/status; echo ==; "
                                             "tr '\\0' ' ' < /proc/1/cmdline; echo"])
    assert r.exit_code == 0, r
    status, _, init = r.stdout.decode().partition("==\n")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Name"] == "cat", status
    pid = int(fields["Pid"])
    nspid = fields["NSpid"].split()
    # the container's /proc belongs to its pid namespace: pids as the pod numbers them
    assert nspid == [str(pid)] and pid < 100, status
    if pid_mode == "POD":
        assert init.strip() == "/pause", init
    else:
        assert init.strip().startswith("sh -c trap"), init
    assert r.stderr == b""


def test_exec_in_container_joined_to_another(pods, handler):
    """pid=TARGET (kubectl debug's ephemeral containers): the second container joins the
    first one's pid namespace; an exec into the second sees the first's init as pid 1 and
    its own /proc/self/status."""
    pod = pods.run(handler, "pidns-target", pid="CONTAINER")
    first = pods.start(pod, "first", ["sh", "-c", 'trap "exit 0" TERM; while true; do '
                                                  'sleep 0.1; done # first'])
    sec = pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(
        network=pb.POD, ipc=pb.POD, pid=pb.TARGET, target_id=first))
    second = pods.start(pod, "second", SLEEPER, security=sec)
    r = pods.cri.exec_sync(second, ["sh", "-c", "grep -E '^(Name|Pid|NSpid):' /proc/self/status;"
                                                " tr '\\0' ' ' < /proc/1/cmdline"])
    assert r.exit_code == 0 and r.stderr == b"", r
    lines = r.stdout.decode().splitlines()
    fields = dict(line.split(":\t", 1) for line in lines[:3])
    assert fields["Name"] == "grep" and fields["NSpid"] == fields["Pid"], r
    assert lines[3].rstrip().endswith("# first"), r
    # both containers' processes are in one namespace
    r = pods.cri.exec_sync(first, ["readlink", "/proc/self/ns/pid"])
    r2 = pods.cri.exec_sync(second, ["readlink", "/proc/self/ns/pid"])
    assert r.stdout == r2.stdout and r.exit_code == 0
