"""Entering a user namespace for the rest of this process: fork; the child unshares a user
and mount namespace and waits; the parent writes its maps (newuidmap/newgidmap for a full
map, /proc/<pid>/{setgroups,uid_map,gid_map} for a single id) and lets it go; the child
becomes uid/gid 0 there and carries on, while the parent only waits and passes signals on,
then exits with the child's status. The child's environment names the host user
(IMAGETOOL_ROOTLESS_UID) so paths stay the user's."""

from __future__ import annotations

import os
import sys

from imagetool.rootless.paths import ENV_INSIDE, ENV_UID
from imagetool.rootless.subids import IdMap, SubidError, which

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def _unshare(flags: int) -> None:
    """unshare(2) through libc (os.unshare is Python 3.12+)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def inside() -> bool:
    return os.environ.get(ENV_INSIDE) == "1"


def _spawn(argv: list[str]) -> tuple[int, int]:
    """Start a map helper (posix_spawn: subprocess costs ~3 ms to import); (pid, the read
    end of its stderr)."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, w, 2), (os.POSIX_SPAWN_CLOSE, r)])
    except OSError:
        os.close(r)
        raise
    finally:
        os.close(w)
    return pid, r


def _wait(argv: list[str], pid: int, r: int) -> str:
    """Wait for a helper from _spawn; its error ("" when it succeeded)."""
    with os.fdopen(r, "rb") as f:
        err = f.read().decode(errors="replace").strip()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "" if code == 0 else f"{os.path.basename(argv[0])}: {err or f'exit {code}'}"


def _write_maps(pid: int, m: IdMap) -> None:
    if m.full:  # newuidmap and newgidmap side by side: each is a setuid exec (~2 ms)
        argvs = []
        for tool, rows in (("newuidmap", m.uids), ("newgidmap", m.gids)):
            exe = which(tool)
            if exe is None:
                raise SubidError(f"{tool} not found: install Debian's uidmap package")
            argvs.append([exe, str(pid), *(str(x) for row in rows for x in row)])
        started: list[tuple[list[str], int, int]] = []
        try:
            for a in argvs:
                started.append((a, *_spawn(a)))
        finally:  # never leave one running, also when the other could not start
            errors = [e for e in (_wait(*s) for s in started) if e]
        if errors:
            raise SubidError(errors[0])
        return
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    for kind, rows in (("uid_map", m.uids), ("gid_map", m.gids)):
        with open(f"/proc/{pid}/{kind}", "w") as f:
            f.write("".join(f"{a} {b} {c}\n" for a, b, c in rows))


def enter(m: IdMap) -> None:
    """Return in the child, inside the namespace as root; the parent never returns."""
    host_uid = os.getuid()
    r1, w1 = os.pipe()  # child -> parent: unshared (or an error)
    r2, w2 = os.pipe()  # parent -> child: maps written (or an error)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r1)
        os.close(w2)
        try:
            _unshare(CLONE_NEWUSER | CLONE_NEWNS)
            os.write(w1, b"k")
        except OSError as e:
            os.write(w1, f"unshare: {e.strerror}".encode())
            os._exit(125)
        os.close(w1)
        answer = os.read(r2, 4096)
        os.close(r2)
        if answer != b"k":
            os._exit(125)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if m.full:
            os.setgroups([])
        os.environ[ENV_INSIDE] = "1"
        os.environ[ENV_UID] = str(host_uid)
        return
    os.close(w1)
    os.close(r2)
    msg = os.read(r1, 4096)
    os.close(r1)
    try:
        if msg != b"k":
            raise SubidError(msg.decode() or "the user namespace child died")
        _write_maps(pid, m)
        os.write(w2, b"k")
    except (OSError, SubidError) as e:
        os.write(w2, b"x")
        os.waitpid(pid, 0)
        print(f"imagetool: user namespace: {e}", file=sys.stderr)
        os._exit(125)
    os.close(w2)
    import signal  # only the waiting parent needs it (enum: ~5 ms, while the child runs)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, lambda n, _f: os.kill(pid, n))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(125)
        except InterruptedError:
            continue
    sys.stdout.flush()
    os._exit(os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status)
             else 128 + os.WTERMSIG(status))
