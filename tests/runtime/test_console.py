"""Terminals: the pty master handed over --console-socket, and `run` with a terminal."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time

from runtime.console import recv_fd


def _read_until_eof(fd: int, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the slave side closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_console_socket_receives_pty_master(pyrunc, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "tty; readlink /proc/self/fd/0; "
                                        "ls -l /dev/console | cut -c1; echo done"]
    bundle.write()
    cid = pyrunc.new_id()
    try:
        pyrunc("create", "--bundle", bundle.path, "--console-socket", path, cid, check=True)
        conn, _ = listener.accept()
        name, master = recv_fd(conn)
        conn.close()
    finally:
        listener.close()
    try:
        assert name.startswith("/dev/pts/")
        assert os.readlink(f"/proc/self/fd/{master}").endswith("ptmx")
        pyrunc("start", cid, check=True)
        out = _read_until_eof(master).decode().replace("\r", "").split()
    finally:
        os.close(master)
    assert out[0] == name and out[1] == name  # the pty is the process's stdio
    assert out[2] == "c" and out[3] == "done"


def test_terminal_without_console_socket_is_refused_by_create(pyrunc, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"console-socket" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_run_with_terminal_proxies_output(pyrunc, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "echo on-a-tty $(tty)"]
    bundle.write()
    p = pyrunc("run", "--bundle", bundle.path, pyrunc.new_id(), stdin=open(os.devnull))
    assert p.returncode == 0, p.stderr
    assert b"on-a-tty /dev/pts/" in p.stdout


def test_non_root_process_leaves_the_callers_stdio_alone(pyrunc, bundle, tmp_path):
    """runc chowns its stdio to the process's uid (fixStdioPermissions); pyrunc only ever
    chowns the pty it makes."""
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 100}
    bundle.config["process"]["args"] = ["sh", "-c", "echo hi; stat -L -c %u /proc/self/fd/1"]
    bundle.write()
    out = tmp_path / "out"
    out.write_bytes(b"")
    os.chmod(out, 0o666)
    with open(out, "wb") as f:
        p = subprocess.run([pyrunc.binary, "--root", pyrunc.root, "run", "--bundle",
                            bundle.path, pyrunc.new_id()], stdin=subprocess.DEVNULL,
                           stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    st = os.stat(out)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert out.read_text().split() == ["hi", str(os.getuid())]


def test_terminal_belongs_to_the_process_uid_and_devpts_group(pyrunc, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    bundle.config["process"].update(terminal=True, user={"uid": 1000, "gid": 100},
                                    consoleSize={"height": 12, "width": 34},
                                    args=["sh", "-c", "stat -c '%u %g' $(tty); stty size"])
    bundle.write()
    cid = pyrunc.new_id()
    try:
        pyrunc("run", "-d", "--bundle", bundle.path, "--console-socket", path, cid,
               check=True)
        conn, _ = listener.accept()
        _name, master = recv_fd(conn)
        conn.close()
    finally:
        listener.close()
    try:
        out = _read_until_eof(master).decode().replace("\r", "").split("\n")
    finally:
        os.close(master)
    assert out[:2] == ["1000 5", "12 34"]


def test_bad_console_size_is_refused(pyrunc, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    bundle.config["process"].update(terminal=True, consoleSize={"height": -1, "width": 3})
    bundle.write()
    cid = pyrunc.new_id()
    try:
        p = pyrunc("create", "--bundle", bundle.path, "--console-socket", path, cid)
    finally:
        listener.close()
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and "process.consoleSize.height" in err, err
    assert len(err.splitlines()) == 1 and not os.path.exists(os.path.join(pyrunc.root, cid))


def _run_on_a_pty(argv: list[str], rows: int, cols: int, timeout: float = 30) -> bytes:
    """argv on a fresh pseudo-terminal of the given size (its controlling tty); what it wrote
    there until it exited."""
    import fcntl
    import pty
    import struct
    import termios
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(master)
        os.waitpid(pid, 0)
    return out


def test_run_with_terminal_takes_the_callers_window_size(pyrunc, bundle):
    """`pyrunc run` of a terminal: true config on a terminal sizes the container's pty as the
    caller's, as runc does (a config's consoleSize would win)."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "echo size $(stty size)"]
    bundle.write()
    cid = pyrunc.new_id()
    out = _run_on_a_pty([pyrunc.binary, "--root", pyrunc.root, "run", "--bundle", bundle.path,
                         cid], 33, 101)
    assert b"size 33 101" in out, out
