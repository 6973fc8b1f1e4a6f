"""OCI hooks: each runs with the container state JSON on stdin, its own env and a timeout.

subprocess is imported only when a hook exists, to keep create/start/delete fast.
"""

from __future__ import annotations

from runtime import jsonio
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def run(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Run the `kind` hooks in order; the first failure raises, naming the hook."""
    if not hooks:
        return
    import subprocess
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = h.get("args") or [h["path"]]
        env = dict(e.partition("=")[::2] for e in h.get("env", []))
        timeout = h.get("timeout")
        where = f"hooks.{kind}[{i}] ({h['path']})"
        try:
            p = subprocess.Popen(args, executable=h["path"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 close_fds=True)
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
            raise PyruncError(f"{where}: exit status {p.returncode}"
                              + (f": {detail[-1]}" if detail else ""))


def run_warn(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any], warn) -> None:
    """poststart/poststop: a failure is a warning and the remaining hooks still run."""
    for i, h in enumerate(hooks or []):
        try:
            run(kind, [h], state)
        except PyruncError as e:
            warn(str(e).replace(f"hooks.{kind}[0]", f"hooks.{kind}[{i}]"))


def hook_state(cid: str, status: str, pid: int, bundle: str,
               annotations: dict[str, str] | None) -> dict[str, Any]:
    from runtime import OCI_VERSION
    st: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": cid, "status": status,
                          "pid": pid, "bundle": bundle}
    if annotations:
        st["annotations"] = annotations
    return st
