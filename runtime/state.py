"""The container state directory: <root>/<id>/{state.json, exec.fifo}, its lock, and status.

state.json is written atomically (temp file + rename) and records the init's pid together
with its start time from /proc/<pid>/stat, so a recycled pid is never mistaken for ours.
"""

import os
import time

from runtime import OCI_VERSION, jsonio
from runtime.errors import NotExistError, PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any



def _default_root() -> str:
    """/run/pyrunc for root; $XDG_RUNTIME_DIR/pyrunc (as runc does) for everyone else."""
    if os.geteuid() == 0:
        return "/run/pyrunc"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "pyrunc") if xdg else f"/tmp/pyrunc-{os.geteuid()}"


DEFAULT_ROOT = _default_root()
STATE_FILE = "state.json"
FIFO_NAME = "exec.fifo"
_ID_EXTRA = frozenset("_+-.")


def validate_id(cid: str) -> str:
    """runc's rule: letters, digits, '_', '+', '-', '.'; never empty, '.' or '..'."""
    if (not cid or cid in (".", "..") or len(cid) > 1024
            or not all(c.isalnum() or c in _ID_EXTRA for c in cid)):
        raise PyruncError(f"invalid container id {cid!r}: use letters, digits, '_', '+', '-', '.'")
    return cid


def now_rfc3339() -> str:
    """RFC 3339 with nanoseconds and 'Z', the shape runc prints in `state` (no datetime
    import: it costs a millisecond on every call)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same directory and rename over the target."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd) if os.environ.get("PYRUNC_FSYNC") else None
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(starttime in clock ticks, state letter) of a pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces or ')'; fields resume after the last ')'.
    rest = raw[raw.rindex(b")") + 2:].split()
    return int(rest[19]), rest[0].decode()


class StateDir:
    """One container's directory under the runtime root, with an flock held while changing it."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = validate_id(cid)
        self.path = os.path.join(root, cid)
        self._lock_fd: int | None = None

    @property
    def state_file(self) -> str:
        return os.path.join(self.path, STATE_FILE)

    @property
    def fifo(self) -> str:
        return os.path.join(self.path, FIFO_NAME)

    def make(self) -> None:
        """Create the directory; an existing one means a duplicate id."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise PyruncError(f"container with id {self.id} already exists") from None
        self.lock()

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def lock(self) -> None:
        """Exclusive flock on the directory itself: one writer per container at a time."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotExistError(self.id) from None
        import fcntl  # here: `state` and `kill` never lock
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> "dict[str, Any]":
        try:
            with open(self.state_file, "rb") as f:
                return jsonio.loads(f.read())
        except FileNotFoundError:
            raise NotExistError(self.id) from None
        except ValueError as e:
            raise PyruncError(f"{self.state_file}: corrupt state: {e}") from None

    def save(self, state: "dict[str, Any]") -> None:
        atomic_write(self.state_file, jsonio.dumps(state).encode())

    def remove(self) -> None:
        """Delete the directory and everything in it (state, fifo, temp files)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        self.unlock()


def status_of(state: "dict[str, Any]", fifo_path: str) -> str:
    """creating/created/running/paused/stopped, read from /proc and the state dir."""
    pid = state.get("pid") or 0
    if pid <= 0:
        return "stopped"
    info = proc_start_time(pid)
    if info is None or info[0] != state.get("init_start_time") or info[1] in ("Z", "X"):
        return "stopped"
    if _frozen(state):
        return "paused"  # also a created one: resume gives it back as created
    return "created" if os.path.exists(fifo_path) else "running"


def _frozen(state: "dict[str, Any]") -> bool:
    """True when the container's cgroup freezer reports FROZEN (v1) or frozen 1 (v2)."""
    cg = state.get("cgroup") or {}
    freezer = (cg.get("paths") or {}).get("freezer")
    try:
        if freezer:
            with open(os.path.join(freezer, "freezer.state"), "rb") as f:
                return f.read().strip() == b"FROZEN"
        unified = cg.get("unified")
        if unified and cg.get("version") == 2:
            with open(os.path.join(unified, "cgroup.freeze"), "rb") as f:
                return f.read().strip() == b"1"
    except OSError:
        return False
    return False


def public_state(state: "dict[str, Any]", status: str) -> "dict[str, Any]":
    """The state as `runc state` prints it: the spec's fields plus rootfs, created, owner."""
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": state["id"],
        "pid": state["pid"] if status != "stopped" else 0,
        "status": status,
        "bundle": state["bundle"],
        "rootfs": state["rootfs"],
        "created": state["created"],
    }
    if state.get("annotations"):
        out["annotations"] = state["annotations"]
    out["owner"] = state.get("owner", "")  # after annotations: runc's field order
    return out
