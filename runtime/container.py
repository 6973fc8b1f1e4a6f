"""A created container and the operations on it: state, start, kill, delete, pause, list.

Every operation reloads state.json and reads the status from /proc, so commands run from
different processes (as shims do) always agree.
"""

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os
import time

from runtime.errors import NotExistError, NotRunningError, PyruncError
from runtime.state import StateDir, public_state, status_of

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Container:
    def __init__(self, root: str, cid: str) -> None:
        self.dir = StateDir(root, cid)
        if not self.dir.exists():
            raise NotExistError(cid)
        self.state = self.dir.load()

    @property
    def id(self) -> str:
        return self.dir.id

    @property
    def pid(self) -> int:
        return int(self.state.get("pid") or 0)

    def status(self) -> str:
        return status_of(self.state, self.dir.fifo)

    def public(self) -> "dict[str, Any]":
        return public_state(self.state, self.status())

    def _hook_state(self, status: str) -> "dict[str, Any]":
        from runtime import hooks
        return hooks.hook_state(self.id, status, self.pid, self.state["bundle"],
                                self.state.get("annotations"))

    def start(self, warn: "Callable[[str], None]") -> None:
        """Open exec.fifo: the init, blocked writing to it, goes on to execve."""
        self.dir.lock()
        try:
            st = self.status()
            if st != "created":
                raise PyruncError(f"cannot start a container that is {st}: container {self.id} "
                                  "is not in created state")
            if "process" not in self.state:  # the spec requires process only for start
                raise PyruncError(f"cannot start container {self.id}: process: its config.json "
                                  "had none at create, and start needs one")
            try:
                fd = os.open(self.dir.fifo, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                raise PyruncError(f"container {self.id} was already started") from None
            try:
                self._read_fifo(fd)
            finally:
                os.close(fd)
            os.unlink(self.dir.fifo)
            _run_hooks_warn("poststart", self.state.get("hooks", {}).get("poststart", []),
                            lambda: self._hook_state("running"), warn, self._bundle_dir())
        finally:
            self.dir.unlock()

    def _bundle_dir(self) -> str | None:
        """The bundle, the cwd of runc's poststart hooks; None (ours) if it is gone."""
        b = self.state.get("bundle")
        return b if b and os.path.isdir(b) else None

    def _read_fifo(self, fd: int) -> None:
        """Read the init's byte, then wait for EOF: the init's end closes at execve.

        Until the init opens its end, a non-blocking read also sees EOF, so wait (checking
        that the init is alive) rather than block forever as a bare blocking open would."""
        import select
        delay = 0.0002
        got = False
        while True:
            select.select([fd], [], [], 1.0)
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                continue  # the writer is there but has not written (or exec'd) yet
            if data:
                got = True
                continue
            if got:
                return  # EOF after the byte: the user's program runs (or the init died)
            if self.status() == "stopped":
                raise PyruncError(f"container {self.id}: init exited before start")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def kill(self, sig: int, all_procs: bool = False) -> None:
        st = self.status()
        if all_procs:
            # Also for a stopped init: processes may remain when the pid namespace is shared,
            # and runc answers 0 either way (containerd's shim sends exactly this).
            self._signal_all(sig)
            return
        if st == "stopped":
            raise NotRunningError(self.id)
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            raise NotRunningError(self.id) from None
        if sig == signal.SIGKILL and st == "paused":
            mgr = load_manager(self.state)
            if mgr is not None:
                mgr.freeze(False)  # a frozen task dies only once thawed, as runc does

    def _signal_all(self, sig: int) -> None:
        """Every process of the container: the cgroup manager freezes while it signals (or
        uses cgroup.kill for SIGKILL), so a forking process can't slip a child past us."""
        mgr = load_manager(self.state)
        if mgr is not None:
            mgr.kill(sig)
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def delete(self, force: bool, warn: "Callable[[str], None]") -> None:
        """Remove a stopped (or, like runc, a created) container; --force kills a live one."""
        self.dir.lock()
        try:
            st = self.status()
            if st in ("running", "paused") and not force:
                raise PyruncError(f"cannot delete container {self.id} that is not stopped: "
                                  f"{st}")
            if st != "stopped":
                self._signal_all(signal.SIGKILL)
                self._wait_gone()
            try:
                _destroy_cgroup(self.state)
            except (OSError, PyruncError) as e:
                warn(f"cgroup cleanup: {e}")
            if self.state.get("netDevices"):  # back to the host under their own names
                from runtime.linux import netdev
                netdev.release(self.state["netDevices"], warn)
            _run_hooks_warn("poststop", self.state.get("hooks", {}).get("poststop", []),
                            lambda: self._hook_state("stopped"), warn, None)
            self.dir.remove()
        finally:
            self.dir.unlock()

    def _wait_gone(self, timeout: float = 10.0) -> None:
        """Wait until the init is gone (reaped or a zombie) and the cgroup is empty."""
        mgr = load_manager(self.state)
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while time.monotonic() < deadline:
            if self.status() == "stopped" and (mgr is None or not _live(mgr.pids())):
                return
            try:  # reap if it is our child (run, tests)
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise PyruncError(f"container {self.id}: processes still alive after SIGKILL")

    def pause(self) -> None:
        self._freeze(True)

    def resume(self) -> None:
        self._freeze(False)

    def _freeze(self, frozen: bool) -> None:
        st = self.status()
        if frozen and st not in ("running", "created"):  # runc pauses created ones too
            raise PyruncError(f"container {self.id} is {st}: container not running")
        if not frozen and st != "paused":
            raise PyruncError(f"container {self.id} is {st}, not paused")
        mgr = load_manager(self.state)
        if mgr is None:
            raise PyruncError(f"container {self.id} has no cgroup to freeze")
        mgr.freeze(frozen)


def _live(pids: list[int]) -> bool:
    """Any pid that is not a zombie? (zombies linger in cgroup.procs until reaped)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[raw.rindex(b")") + 2:][:1] not in (b"Z", b"X"):
            return True
    return False


def _destroy_cgroup(state: "dict[str, Any]") -> None:
    """Remove the container's cgroup directories. The usual case, no sub-cgroup and no
    task left, is one rmdir each without loading the cgroup managers (~0.4 ms of a
    delete); anything else goes to the manager's destroy (sub-cgroups, EBUSY retries)."""
    cg = state.get("cgroup") or {}
    dirs = set((cg.get("paths") or {}).values()) if cg.get("version") == 1 else \
        {cg.get("unified")}
    try:
        for d in sorted(d for d in dirs if d):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
        return
    except OSError:
        pass
    mgr = load_manager(state)
    if mgr is not None:
        mgr.destroy()


def load_manager(state: "dict[str, Any]"):
    """runtime.cgroups' load_manager, imported on first use: `state`, `start`, a plain
    `kill` and the usual `delete` never load the cgroup modules."""
    from runtime.cgroups import load_manager as load
    return load(state)


def _run_hooks_warn(kind: str, hook_list: "list[dict[str, Any]]",
                    state: "Callable[[], dict[str, Any]]", warn: "Callable[[str], None]",
                    cwd: str | None) -> None:
    """runtime.hooks.run_warn, importing runtime.hooks only when there are hooks to run."""
    if hook_list:
        from runtime import hooks
        hooks.run_warn(kind, hook_list, state(), warn, cwd=cwd)


def list_containers(root: str) -> list[Container]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append(Container(root, name))
        except (PyruncError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError,
                                                             NotADirectoryError)):
                raise  # ENOENT, ENOTDIR: gone or not a container's directory
    return out
