"""OCI hooks: each runs with the container state JSON on stdin, its own env and a timeout.

The state each kind sees (runtime-spec config.md and runtime.md; runc 1.1.5 differs where noted,
conformance/test_hooks_diff.py pins it):

    kind             status    pid                      cwd
    prestart         created   host pid of the init     the bundle   (runc: "creating")
    createRuntime    created   host pid of the init     the bundle   (runc: "creating")
    createContainer  created   pid inside the container the rootfs   (runc: "creating")
    startContainer   created   pid inside the container process.cwd
    poststart        running   host pid of the init     the bundle   (runc runs it in create)
    poststop         stopped   host pid of the init     the caller's

A failure reads like runc's, ``error running hook #1: ...``, then names the hook's field.
subprocess is imported only when a hook exists, to keep create/start/delete fast.
"""

from __future__ import annotations

from runtime import jsonio
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def run(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any],
        cwd: str | None = None) -> None:
    """Run the `kind` hooks in order (in `cwd` if given); the first failure raises."""
    if not hooks:
        return
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        _run_one(kind, i, h, data, cwd)


def run_warn(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any], warn,
             cwd: str | None = None) -> None:
    """poststart/poststop: a failure is a warning and the remaining hooks still run."""
    if not hooks:
        return
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        try:
            _run_one(kind, i, h, data, cwd)
        except PyruncError as e:
            warn(str(e))


def _run_one(kind: str, i: int, h: dict[str, Any], data: bytes, cwd: str | None) -> None:
    import subprocess
    args = h.get("args") or [h["path"]]
    env = dict(e.partition("=")[::2] for e in h.get("env", []))
    timeout = h.get("timeout")
    where = f"error running hook #{i}: hooks.{kind}[{i}] ({h['path']})"
    try:
        p = subprocess.Popen(args, executable=h["path"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             close_fds=True, cwd=cwd)
    except OSError as e:
        raise PyruncError(f"{where}: cannot run: {e.strerror}") from None
    try:
        out, err = p.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise PyruncError(f"{where}: timed out after {timeout}s") from None
    if p.returncode != 0:
        detail = (err or out).decode(errors="replace").strip().splitlines()
        raise PyruncError(f"{where}: {_how(p.returncode)}"
                          + (f": {detail[-1]}" if detail else ""))


def _how(returncode: int) -> str:
    """Go's wording, as runc prints it: "exit status 3", "signal: bad system call"."""
    if returncode >= 0:
        return f"exit status {returncode}"
    import _signal
    try:
        name = _signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name[:1].lower()}{name[1:]}"


def hook_state(cid: str, status: str, pid: int, bundle: str,
               annotations: dict[str, str] | None) -> dict[str, Any]:
    from runtime import OCI_VERSION
    st: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": cid, "status": status,
                          "pid": pid, "bundle": bundle}
    if annotations:
        st["annotations"] = annotations
    return st
