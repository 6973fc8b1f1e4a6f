"""attach forwards input as docker 20.10's does (a private dockerd side by side): to a -i
container's stdin pipe, to a -it container's pty from a terminal, with the detach keys
(ctrl-p ctrl-q, or --detach-keys) leaving the container running."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.imagetool.storehelp import (
    DOCKER,
    IMAGETOOL,
    imagetool,
    remove_containers,
    rootfs_tar,
    running_dockerd,
    unmount_under,
)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def tools():
    d = tempfile.mkdtemp(prefix="itatt-")
    root = os.path.join(d, "store")
    try:
        imagetool(root, "import", "--cmd", "sh", rootfs_tar(d), "busybox:latest")
        with running_dockerd() as dk:
            save = subprocess.run([IMAGETOOL, "--root", root, "save", "busybox"],
                                  capture_output=True, timeout=120, check=True)
            p = subprocess.run([DOCKER or "docker", "load"], input=save.stdout, env=dk.env,
                               capture_output=True, timeout=120)
            assert p.returncode == 0, p.stderr.decode()
            yield {"ours": ([IMAGETOOL, "--root", root], None),
                   "docker": ([DOCKER or "docker"], dk.env), "root": root, "dk": dk}
    finally:
        remove_containers(root)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def run(tools):
    made: list[tuple[str, str]] = []

    def call(tool: str, *args: str, input: bytes | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess:
        argv, env = tools[tool]
        if args and args[0] == "run":
            made.append((tool, args[args.index("--name") + 1]))
        p = subprocess.run([*argv, *args], input=input, capture_output=True, env=env,
                           timeout=timeout, stdin=None if input is not None
                           else subprocess.DEVNULL)
        assert not check or p.returncode == 0, (args, p.stderr.decode())
        return p
    yield call
    for tool, name in made:
        call(tool, "rm", "-f", name, check=False)


def _on_pty(argv: list[str], env: dict | None, script: list[tuple[bytes, bytes]],
            timeout: float = 30) -> tuple[int, bytes]:
    """Run argv on a fresh pty; for each (wait_for, send), wait until the output holds
    wait_for, then type send. Returns (exit code, the output)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    out = b""
    steps = list(script)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            while steps and steps[0][0] in out:
                os.write(master, steps.pop(0)[1])
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        return p.wait(timeout=max(1.0, deadline - time.monotonic())), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)


def _running(run, tool: str, name: str) -> str:
    return run(tool, "inspect", "-f", "{{.State.Running}}", name).stdout.decode().strip()


@pytest.mark.parametrize("tool", ["ours", "docker"])
def test_attach_sends_stdin_to_a_di_container(run, tool):
    run(tool, "run", "-di", "--name", "ai", "--network", "none", "busybox", "sh", "-c",
        "read x; echo got $x; read y; echo then $y; exit 3")
    time.sleep(0.3)
    p = run(tool, "attach", "ai", input=b"hello\nworld\n", check=False)
    assert p.returncode == 3, p.stderr.decode()
    assert run(tool, "logs", "ai").stdout == b"got hello\nthen world\n"
    # we keep following the output until the container exits; docker's daemon stops a
    # client's output once its stdin ended (a -di container is not StdinOnce), which races
    # with the container's echo: docker shows none, some or all of it
    if tool == "ours":
        assert p.stdout == b"got hello\nthen world\n"
    else:
        assert b"got hello\nthen world\n".startswith(p.stdout), p.stdout


@pytest.mark.parametrize("tool", ["ours", "docker"])
def test_attach_input_is_kept_open_across_clients(tools, run, tool):
    """A -di container's stdin outlives one client's EOF (it is not StdinOnce)."""
    run(tool, "run", "-di", "--name", "ak", "--network", "none", "busybox", "sh", "-c",
        "read x; echo got $x; read y; echo then $y")
    time.sleep(0.3)
    argv, env = tools[tool]
    first = subprocess.Popen([*argv, "attach", "ak"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first.stdin.write(b"one\n")
        first.stdin.close()
        time.sleep(1.5)
        assert first.poll() is None  # still following the output: the container runs on
        assert _running(run, tool, "ak") == "true"
        p = run(tool, "attach", "ak", input=b"two\n", check=False)
        assert p.returncode == 0, p.stderr.decode()
        assert first.wait(timeout=20) == 0
        assert run(tool, "logs", "ak").stdout == b"got one\nthen two\n"
        if tool == "ours":  # docker's clients lose their output at their stdin's EOF
            assert p.stdout == b"then two\n"
            assert first.stdout.read() == b"got one\nthen two\n"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


@pytest.mark.parametrize("tool", ["ours", "docker"])
def test_attach_tty_and_detach_keys(tools, run, tool):
    """-dit: typed keys reach the shell through its pty; ctrl-p ctrl-q detaches (the
    container runs on), and so do --detach-keys of one's own; a detach-key prefix followed
    by another key is typed as it was."""
    run(tool, "run", "-dit", "--name", "at", "--network", "none", "busybox", "sh")
    time.sleep(0.3)
    argv, env = tools[tool]
    rc, out = _on_pty([*argv, "attach", "at"], env,
                      [(b"", b"echo $((6*7))\r"), (b"42", b"\x10echo x$((1+1))\r"),
                       (b"x2", b"\x10\x11")])
    assert rc == 1 and b"42" in out and b"x2" in out, out  # docker: 1 after a detach
    assert b"read escape sequence" in out, out
    assert _running(run, tool, "at") == "true"
    rc, out = _on_pty([*argv, "attach", "--detach-keys", "ctrl-a,x", "at"], env,
                      [(b"", b"echo $((7*7))\r"), (b"49", b"\x01x")])
    assert rc == 1 and b"49" in out, out
    assert _running(run, tool, "at") == "true"
    rc, out = _on_pty([*argv, "attach", "at"], env, [(b"", b"exit 4\r")])
    assert rc == 4, out


def test_bad_detach_keys_refused(run):
    run("ours", "run", "-dit", "--name", "bk", "--network", "none", "busybox", "sh")
    p = run("ours", "attach", "--detach-keys", "ctrl-!", "bk", check=False)
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.decode() == ("imagetool: attach: --detach-keys: invalid key 'ctrl-!' "
                                 "(want a character or ctrl-X)\n")
    assert _running(run, "ours", "bk") == "true"


def test_no_stdin_and_a_container_without_input(run):
    """attach --no-stdin, and attach to a container started without -i, only follow its
    output; our stdin is not read."""
    run("ours", "run", "-d", "--name", "ni", "--network", "none", "busybox", "sh", "-c",
        "sleep 1; echo out; exit 2")
    p = run("ours", "attach", "ni", input=b"ignored\n", check=False)
    assert (p.returncode, p.stdout) == (2, b"out\n"), p.stderr.decode()
    run("ours", "run", "-di", "--name", "ns", "--network", "none", "busybox", "sh", "-c",
        "sleep 1; echo out; exit 5")
    p = run("ours", "attach", "--no-stdin", "ns", input=b"ignored\n", check=False)
    assert (p.returncode, p.stdout) == (5, b"out\n"), p.stderr.decode()
