"""exec: a new process in every namespace and the cgroup of a running container."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from runtime.console import recv_fd


@pytest.fixture
def running(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["hostname"] = "exechost"
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
    return cid, pyrunc.state(cid)["pid"]


def test_exec_joins_namespaces_and_cgroup(pyrunc, running):
    cid, pid = running
    p = pyrunc("exec", cid, "sh", "-c", "hostname; for n in mnt pid net ipc uts; do "
                                        "readlink /proc/self/ns/$n; done; cat /proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().split()
    assert lines[0] == "exechost"
    for i, n in enumerate(("mnt", "pid", "net", "ipc", "uts")):
        assert lines[1 + i] == os.readlink(f"/proc/{pid}/ns/{n}"), n
    with open(f"/proc/{pid}/cgroup") as f:
        assert sorted(lines[6:]) == sorted(f.read().split())


def test_exec_exit_status_and_flags(pyrunc, running):
    cid, _ = running
    assert pyrunc("exec", cid, "sh", "-c", "exit 5").returncode == 5
    p = pyrunc("exec", "-u", "1000:1000", "-e", "FOO=bar", "--cwd", "/tmp", cid, "sh", "-c",
               "echo $FOO $(id -u):$(id -g) $(pwd) $PATH")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["bar", "1000:1000", "/tmp",
                                         "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                         "/sbin:/bin"]
    p = pyrunc("exec", "--cap", "CAP_SYS_ADMIN", "--no-new-privs", cid, "sh", "-c",
               "grep -E 'CapEff|NoNewPrivs' /proc/self/status")
    eff, nnp = [line.split()[1] for line in p.stdout.decode().splitlines()]
    assert int(eff, 16) & (1 << 21) and nnp == "1"


def test_exec_errors(pyrunc, running):
    cid, _ = running
    p = pyrunc("exec", cid, "nosuchprogram")
    assert p.returncode != 0 and b"executable file not found" in p.stderr
    p = pyrunc("exec", "nosuchcontainer", "true")
    assert p.returncode != 0 and b"does not exist" in p.stderr
    p = pyrunc("exec", cid)
    assert p.returncode != 0 and b"no command" in p.stderr


def test_exec_detach_pid_file_and_process_json(pyrunc, running, tmp_path):
    cid, pid = running
    proc = {"args": ["sh", "-c", "echo from-json > /dev/shm/out; sleep 30"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    pidfile = str(tmp_path / "pid")
    p = pyrunc("exec", "-d", "--pid-file", pidfile, "--process", str(tmp_path / "p.json"), cid)
    assert p.returncode == 0, p.stderr
    epid = int(open(pidfile).read())
    assert open(f"/proc/{epid}/cmdline").read().split("\0")[0] in ("sh", "sleep")
    assert os.readlink(f"/proc/{epid}/ns/pid") == os.readlink(f"/proc/{pid}/ns/pid")
    deadline = time.monotonic() + 5
    out = b""
    while time.monotonic() < deadline and b"from-json" not in out:
        out = pyrunc("exec", cid, "cat", "/dev/shm/out").stdout
        time.sleep(0.05)
    assert out.strip() == b"from-json"
    pyrunc("kill", "--all", cid, "KILL", check=True)  # the exec'd process goes too


def test_exec_into_stopped_container_fails(pyrunc, bundle):
    cid = pyrunc.new_id()
    pyrunc("run", "--keep", "--bundle", bundle.path, cid, check=True)
    p = pyrunc("exec", cid, "true")
    assert p.returncode != 0 and b"stopped" in p.stderr


def test_exec_tty_console_socket(pyrunc, running, tmp_path):
    cid, _ = running
    path = str(tmp_path / "c.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        p = pyrunc("exec", "-t", "-d", "--console-socket", path, cid, "sh", "-c",
                   "tty; sleep 1")
        assert p.returncode == 0, p.stderr
        conn, _ = listener.accept()
        name, master = recv_fd(conn)
        conn.close()
    finally:
        listener.close()
    try:
        data = b""
        deadline = time.monotonic() + 5
        while b"\n" not in data and time.monotonic() < deadline:
            data += os.read(master, 100)
        assert data.strip().decode() == name
    finally:
        os.close(master)


def test_exec_gets_the_containers_seccomp_filter(pyrunc, bundle):
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
    p = pyrunc("exec", cid, "sh", "-c", "grep Seccomp: /proc/self/status; mkdir /dev/shm/x")
    assert p.returncode != 0
    assert b"Seccomp:\t2" in p.stdout and b"Operation not permitted" in p.stderr
