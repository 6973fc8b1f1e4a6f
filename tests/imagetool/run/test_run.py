"""`imagetool run` and the container verbs on real containers: a busybox image made with
`imagetool import` from busybox-static, a private store, bridge and subnet per module, real
HTTP over a published 127.0.0.1 port. Everything is cleaned up even when a test fails:
containers (rm -f, then monitors by pid), the bridge, mounts under the temp dir."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request

import pytest

from imagetool import mediatypes as mt
from imagetool.run.records import Records
from imagetool.store import Store
from tests.imagetool.conftest import free_port
from tests.imagetool.storehelp import (
    IMAGETOOL,
    imagetool,
    private_network,
    remove_containers,
    rootfs_tar,
    unmount_under,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="itrun-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", rootfs_tar(d), "busybox:latest")
        with private_network(root, "itt", 89) as bridge:
            try:
                yield {"dir": d, "root": root, "bridge": bridge}
            finally:
                remove_containers(root)
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)



@pytest.fixture
def it(env):
    yield lambda *a, **kw: imagetool(env["root"], *a, **kw)
    remove_containers(env["root"])


def _wait_exited(root: str, cid: str, timeout: float = 30) -> dict:
    recs = Records(root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = recs.load(cid)
        if rec["State"]["Status"] == "exited" and rec["State"].get("Pid") == 0:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"{cid} did not exit")


def _get(url: str, tries: int = 50) -> bytes:
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_httpd_published_port(env, it):
    www = os.path.join(env["dir"], "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from the container\n")
    port = free_port()
    cid = it("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-v", f"{www}:/www:ro",
             "busybox", "httpd", "-f", "-p", "80", "-h", "/www").stdout.decode().strip()
    assert len(cid) == 64
    assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from the container\n"
    ps = it("ps").stdout.decode()
    assert "web" in ps and f"127.0.0.1:{port}->80/tcp" in ps
    insp = json.loads(it("inspect", "web").stdout)[0]
    assert insp["State"]["Status"] == "running"
    addr = insp["NetworkSettings"]["IPAddress"]
    assert addr.startswith("10.89.")
    it("rm", "-f", "web")
    assert Records(env["root"]).ids() == []
    assert subprocess.run(["ip", "link", "show", f"veth{cid[:11]}"], capture_output=True
                          ).returncode != 0
    with open(os.path.join(env["root"], "network", "ipam.json")) as f:
        assert json.load(f)["allocated"] == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(30)
print("ready", flush=True)
for _ in range(50):
    data, addr = s.recvfrom(2048)
    s.sendto(b"pong:" + data, addr)
"""


def test_udp_published_port(env, it):
    """-p HOST:CTR/udp: datagrams reach a server in the container's network namespace (run
    there by the test with nsenter, as busybox has no UDP server) and each client gets its
    own replies back through the proxy."""
    import socket
    port = free_port()
    cid = it("run", "-d", "-p", f"127.0.0.1:{port}:5353/udp", "busybox", "sleep", "60"
             ).stdout.decode().strip()
    pid = json.loads(it("inspect", cid).stdout)[0]["State"]["Pid"]
    assert f"127.0.0.1:{port}->5353/udp" in it("ps").stdout.decode()
    server = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c",
                               UDP_ECHO, "5353"], stdout=subprocess.PIPE)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        for n, c in enumerate(clients):
            c.settimeout(2)
            c.sendto(f"hi{n}".encode(), ("127.0.0.1", port))
            assert c.recvfrom(2048)[0] == f"pong:hi{n}".encode()
        clients[0].sendto(b"again", ("127.0.0.1", port))
        assert clients[0].recvfrom(2048)[0] == b"pong:again"
    finally:
        for c in clients:
            c.close()
        server.kill()
        server.wait()
        it("rm", "-f", cid)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", port))  # the proxy let the port go
    finally:
        probe.close()


def test_overrides_seen_inside(env, it):
    p = it("run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp/work", "-u", "user",
           "--entrypoint", "/bin/sh", "--network", "none", "busybox", "-c",
           'echo "foo=$FOO"; echo "pwd=$(pwd)"; echo "id=$(id -u):$(id -g)"; echo "0=$0"')
    out = p.stdout.decode().splitlines()
    assert out == ["foo=bar baz", "pwd=/tmp/work", "id=1000:1000", "0=/bin/sh"]


def test_etc_hostname_hosts_and_resolv_conf_as_docker_gives_them(env, it):
    show = "hostname; cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf"
    out = it("run", "--rm", "--hostname", "box1", "busybox", "sh", "-c", show
             ).stdout.decode().split("--\n")
    assert out[0] == "box1\nbox1\n"
    hosts = [line.split() for line in out[1].splitlines()]
    assert ["127.0.0.1", "localhost"] in hosts
    named = [h for h in hosts if h[1:] == ["box1"]]
    assert len(named) == 1 and named[0][0].startswith("10.89."), out[1]
    servers = [w[1] for w in (line.split() for line in out[2].splitlines())
               if w[:1] == ["nameserver"]]
    assert servers and not any(a.startswith("127.") or a == "::1" for a in servers), out[2]

    # --network none: no address to name; each file is a bind mount, the image is untouched
    cid = it("run", "-d", "--network", "none", "busybox", "sleep", "30").stdout.decode().strip()
    hosts = it("exec", cid, "cat", "/etc/hosts").stdout.decode()
    assert "localhost" in hosts and cid[:12] not in hosts, hosts
    assert it("exec", cid, "cat", "/etc/hostname").stdout == f"{cid[:12]}\n".encode()
    mounts = it("exec", cid, "cat", "/proc/self/mountinfo").stdout.decode().splitlines()
    for name in ("hostname", "hosts", "resolv.conf"):
        assert sum(1 for m in mounts if m.split()[4] == f"/etc/{name}") == 1, name
    it("rm", "-f", cid)


def test_exit_code_and_rm_leaves_nothing(env, it):
    p = it("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    assert Records(env["root"]).ids() == []
    assert os.listdir(os.path.join(env["root"], "runtime")) == []
    with open("/proc/self/mounts") as f:
        assert not [line for line in f if os.path.join(env["root"], "containers") in line]


def test_logs_keep_stdout_and_stderr(env, it):
    cid = it("run", "-d", "busybox", "sh", "-c",
             "echo one; echo two >&2; printf partial").stdout.decode().strip()
    rec = _wait_exited(env["root"], cid)
    assert rec["State"]["ExitCode"] == 0
    with open(rec["LogPath"]) as f:
        entries = [json.loads(line) for line in f]
    assert [(e["stream"], e["log"]) for e in entries if e["stream"] == "stdout"] == \
        [("stdout", "one\n"), ("stdout", "partial")]
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["two\n"]
    assert all(e["time"].endswith("Z") for e in entries)
    p = it("logs", cid)
    assert p.stdout == b"one\npartial" and p.stderr == b"two\n"
    assert "Exited (0)" in it("ps", "-a").stdout.decode()
    assert cid[:12] not in it("ps").stdout.decode()
    it("rm", cid)
    assert Records(env["root"]).ids() == []


def _image_with_stop_signal(root: str, name: str, sig: str) -> None:
    store = Store(root)
    src = store.get_image("docker.io/library/busybox:latest")
    manifest = store.read_json(src)
    config = store.read_json(manifest["config"])
    config["config"]["StopSignal"] = sig
    manifest["config"] = store.put_json(config, mt.OCI_CONFIG)
    desc = store.put_json(manifest, mt.OCI_MANIFEST)
    desc["platform"] = src.get("platform")
    store.set_image(name, desc)


def test_stop_uses_image_stop_signal_then_kill(env, it):
    _image_with_stop_signal(env["root"], "docker.io/library/stopper:latest", "SIGUSR1")
    script = 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 0.1; done'
    cid = it("run", "-d", "stopper", "sh", "-c", script).stdout.decode().strip()
    _wait_log(env["root"], cid, "ready")
    it("stop", "-t", "20", cid)
    rec = Records(env["root"]).load(cid)
    assert rec["State"]["ExitCode"] == 7
    assert "got-usr1" in it("logs", cid).stdout.decode()
    # a container ignoring its stop signal is killed once the timeout is over
    script = 'trap "" USR1; echo ready; while :; do sleep 0.1; done'
    cid = it("run", "-d", "stopper", "sh", "-c", script).stdout.decode().strip()
    _wait_log(env["root"], cid, "ready")
    t0 = time.monotonic()
    it("stop", "-t", "1", cid)
    assert time.monotonic() - t0 >= 1
    assert Records(env["root"]).load(cid)["State"]["ExitCode"] == 137


def _wait_log(root: str, cid: str, text: str, timeout: float = 20) -> None:
    path = Records(root).load(cid)["LogPath"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            if text in f.read():
                return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged")


def test_two_containers_share_layers(env, it):
    a = it("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    b = it("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    recs = Records(env["root"])
    lowers = []
    with open("/proc/self/mountinfo") as f:
        info = f.read().splitlines()
    for cid in (a, b):
        with open(recs.path(cid, "bundle", "imagetool.json")) as f:
            assert json.load(f)["mode"] == "overlay"
        target = recs.path(cid, "bundle", "rootfs")
        line = [x for x in info if x.split()[4] == target]
        assert line, f"{target} is not a mount"
        opts = line[0].split(" - ")[1]
        lowers.append([o for o in opts.split(",") if o.startswith("lowerdir=")][0]
                      .split("/")[-1])
    assert lowers[0] == lowers[1]  # the same layer snapshot below both
    ia = json.loads(it("inspect", a).stdout)[0]["NetworkSettings"]["IPAddress"]
    ib = json.loads(it("inspect", b).stdout)[0]["NetworkSettings"]["IPAddress"]
    assert ia != ib
    it("rm", "-f", a, b)
    assert recs.ids() == []


def test_exec_kill_and_resources(env, it):
    cid = it("run", "-d", "--memory", "64m", "--pids-limit", "40", "--cpus", "0.5",
             "--read-only", "-e", "A=1", "busybox", "sleep", "60").stdout.decode().strip()
    with open(Records(env["root"]).path(cid, "bundle", "config.json")) as f:
        spec = json.load(f)
    res = spec["linux"]["resources"]
    assert res["memory"]["limit"] == 64 << 20 and res["pids"]["limit"] == 40
    assert res["cpu"] == {"period": 100000, "quota": 50000}
    assert spec["root"]["readonly"] is True
    p = it("exec", "-e", "B=2", "-u", "user", cid, "sh", "-c",
           'echo "$A$B $(id -u)"; touch /x 2>/dev/null || echo ro')
    assert p.stdout.decode().splitlines() == ["12 1000", "ro"]
    it("kill", "-s", "TERM", cid)  # sleep as pid 1 ignores SIGTERM: still running
    time.sleep(0.3)
    assert json.loads(it("inspect", cid).stdout)[0]["State"]["Status"] == "running"
    it("kill", cid)
    assert _wait_exited(env["root"], cid)["State"]["ExitCode"] == 137
    assert it("rm", cid).returncode == 0


def test_run_errors_leave_nothing(env, it):
    p = it("run", "--rm", "busybox", "/no/such/binary", check=False)
    assert p.returncode != 0
    assert Records(env["root"]).ids() == []
    p = it("rm", "nonexistent", check=False)
    assert p.returncode != 0


def test_interactive_stdin_and_logs_follow(env, it):
    p = it("run", "-i", "--rm", "--network", "none", "busybox", "cat", input=b"piped in\n")
    assert p.stdout == b"piped in\n"
    cid = it("run", "-d", "--network", "none", "busybox", "sh", "-c",
             "for i in 1 2 3; do echo l$i; sleep 0.2; done").stdout.decode().strip()
    assert it("logs", "-f", cid, timeout=30).stdout == b"l1\nl2\nl3\n"
    it("rm", cid)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _on_pty(root: str, args: list[str],
            script: list[tuple[bytes, bytes | tuple[int, int]]] = (),
            timeout: float = 30, ctty: bool = False) -> tuple[int, bytes]:
    """Run imagetool with a fresh 24x80 pty as its terminal (stdin, stdout, stderr; with
    ctty also its controlling terminal, so the kernel signals it a resize); for each
    (wait_for, send) of `script`, wait until the output so far holds wait_for, then type
    send, or resize the terminal to send=(rows, cols). Returns (exit code, everything the
    terminal showed); checks that the terminal's modes are as they were before once
    imagetool is done."""
    master, slave = pty.openpty()
    _set_size(slave, 24, 80)
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([IMAGETOOL, "--root", root, *args], stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True,
                         preexec_fn=(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
                         if ctty else None)
    out = b""
    steps = list(script)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            while steps and steps[0][0] in out:
                send = steps.pop(0)[1]
                if isinstance(send, tuple):
                    _set_size(slave, *send)  # the kernel sends SIGWINCH to its session
                else:
                    os.write(master, send)
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave is gone
                    data = b""
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert termios.tcgetattr(slave) == before, "the terminal was left in another mode"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(slave)
        os.close(master)
    return rc, out


def test_tty_foreground(env, it):
    rc, out = _on_pty(env["root"], ["run", "-t", "--rm", "--network", "none", "busybox",
                                    "sh", "-c", "tty; echo hi; exit 5"])
    assert rc == 5, out
    lines = out.decode(errors="replace").replace("\r", "").splitlines()
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]), out
    assert lines[1] == "hi", out
    assert Records(env["root"]).ids() == []


def test_tty_interactive(env, it):
    rc, out = _on_pty(env["root"], ["run", "-it", "--rm", "--network", "none", "busybox",
                                    "sh"],
                      [(b"# ", b"echo typed\n"), (b"typed\r\n", b"exit 3\n")])
    assert rc == 3, out
    assert b"typed\r\n" in out, out  # the output of echo, not only the echoed keys
    assert out.count(b"echo typed") == 1, out  # echoed by the container's pty: ours is raw
    assert Records(env["root"]).ids() == []


def test_tty_resize_reaches_the_container(env, it):
    """A resize of the caller's terminal is copied to the container's pty, as docker does."""
    wait = ('stty size; i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 100 ]; do '
            'sleep 0.1; i=$((i+1)); done; echo "now $(stty size)"')
    rc, out = _on_pty(env["root"], ["run", "-t", "--rm", "--network", "none", "busybox",
                                    "sh", "-c", wait], [(b"24 80\r", (40, 120))],
                      ctty=True)
    assert rc == 0, out
    assert b"now 40 120" in out, out
    assert Records(env["root"]).ids() == []


def test_tty_detached_logs_and_exec_tty(env, it):
    cid = it("run", "-d", "-t", "--network", "none", "busybox", "sh", "-c",
             "tty; echo logged; sleep 60").stdout.decode().strip()
    _wait_log(env["root"], cid, "logged")
    with open(Records(env["root"]).load(cid)["LogPath"]) as f:
        entries = [json.loads(line) for line in f]
    assert {e["stream"] for e in entries} == {"stdout"}
    text = "".join(e["log"] for e in entries)
    assert re.match(r"/dev/pts/\d+\r\nlogged\r\n", text), text
    rc, out = _on_pty(env["root"], ["exec", "-t", cid, "sh", "-c", "tty; echo from-exec"])
    assert rc == 0, out
    lines = out.decode(errors="replace").replace("\r", "").splitlines()
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]) and lines[1] == "from-exec", out
    it("rm", "-f", cid)
    assert Records(env["root"]).ids() == []


def test_run_pulls_a_missing_image(env, it, registry):
    """`run` of an image the store lacks pulls it first, like docker run (a real
    docker-registry on 127.0.0.1, plain HTTP)."""
    reg = registry("plain")
    remote = reg.ref("lib/busybox:pulled")
    it("push", "-q", "busybox", remote)
    assert remote not in it("images").stdout.decode()
    p = it("run", "--rm", "--network", "none", remote, "echo", "pulled and ran")
    assert p.stdout.decode().strip().endswith("pulled and ran")
    assert remote.split(":")[0].split("/")[0] in it("images").stdout.decode()
    assert Records(env["root"]).ids() == []
