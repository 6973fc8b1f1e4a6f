"""What both cgroup versions share, below them and the manager that picks one: the Manager
interface, discovery of the host's cgroup mounts and the process's own cgroups, and the
cgroupfs helpers (read, write, enter, remove). Imports no other module of runtime.cgroups.
"""

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os
import time

from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def discover(mountinfo: str = "/proc/self/mountinfo") -> "list[dict[str, Any]]":
    """Every cgroup/cgroup2 mount: mountpoint, fstype, super options, controllers, root."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _src, superopts = (post.split() + ["", "", ""])[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            opts = superopts.split(",")
            ctrls = [o for o in opts if o not in ("rw", "ro") and "=" not in o
                     and not o.startswith("no") and o not in ("clone_children",
                                                             "xattr", "nsdelegate",
                                                             "memory_recursiveprot")]
            names = [o for o in opts if o.startswith("name=")]
            out.append({"mountpoint": _unescape(fields[4]), "root": _unescape(fields[3]),
                        "fstype": fstype, "controllers": ctrls if fstype == "cgroup" else [],
                        "options": ",".join(ctrls + names)})
    return out


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """{controller-or-name: path} of this process; '' keys the unified hierarchy."""
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            _id, ctrls, cg = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = cg
    return out


class Manager:
    """The operations every cgroup version provides to the runtime."""

    version = 0
    made: list[str]  # directories create() made (parents first); [] when all were there

    def create(self) -> None:
        raise NotImplementedError

    def dirs(self) -> list[str]:
        """Every directory of the container's cgroup (one per hierarchy)."""
        raise NotImplementedError

    def discard(self) -> None:
        """Undo create(): remove the directories it made, deepest first, and nothing that
        was there before (a cgroupsPath may name another container's cgroup). Raises
        naming what could not be removed, after trying every one."""
        left = []
        own = set(self.dirs())
        for d in reversed(getattr(self, "made", [])):
            try:
                if d in own:
                    remove_tree(d)  # with any sub-cgroup a hook may have made
                else:
                    rmdir_retry(d, tries=20)
            except (OSError, PyruncError):
                left.append(d)
        if left:
            raise PyruncError(f"cgroup: cannot remove {', '.join(left)}")

    def check_reuse(self, warn: "Callable[[str], None]") -> None:
        """runc's checks of the cgroup a new container is about to join: processes already
        there get a warning (the container still runs); a frozen cgroup is refused, since
        whatever enters it freezes. Call after create(), before any setting is written."""
        made = set(getattr(self, "made", []))
        if not all(d in made for d in self.dirs()):  # new directories hold no process
            n = len(self.pids())
            if n:
                warn(f"container's cgroup is not empty: {n} process(es) found")
        if self.would_freeze():
            raise PyruncError("container's cgroup unexpectedly frozen")

    def apply(self, pid: int) -> None:
        raise NotImplementedError

    def plan(self, sub: dict[str, str] | None = None,
             skip: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """The (directory, file) pairs enter() writes; raises on a bad `sub` (call it before
        starting anything to check exec --cgroup)."""
        raise NotImplementedError

    def enter(self, pid: int, skip: set[str] | frozenset[str] = frozenset(),
              sub: dict[str, str] | None = None) -> None:
        """Put `pid`, a freshly cloned single-threaded container process, into the
        container's cgroups (the directories in `skip` excepted: it was born there). Only
        the container's processes go there; the runtime's own never do. `sub` maps a
        controller ("" for all) to a sub-cgroup (exec --cgroup); the directory must exist."""
        for d, name in self.plan(sub, skip):
            enter_dir(d, name, pid)

    def would_freeze(self) -> bool:
        """True when a process put into this cgroup would be frozen: its freezer (own or
        inherited from a parent) is FROZEN or freezing."""
        return self.frozen()

    def release(self, pid: int) -> None:
        """Move `pid` out of a frozen cgroup into the runtime's own, so that a SIGKILL can
        reach it (a task frozen by the v1 freezer dies only once thawed). Best effort."""

    def unified_dir(self) -> str | None:
        """The cgroup2 directory a new child can be born into (clone3 CLONE_INTO_CGROUP)."""
        return None

    def set(self, resources: "dict[str, Any]", warn: "Callable[[str], None] | None" = None) -> None:
        """Apply linux.resources; a setting the host can't apply raises, naming the controller."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process of the container, sub-cgroups included."""
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def stats(self) -> "dict[str, Any]":
        """The `data` of runc's `events --stats` line."""
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def to_state(self) -> "dict[str, Any]":
        raise NotImplementedError

    def _kill_file(self) -> str | None:
        """The cgroup.kill file covering the container, when the kernel has one."""
        return None

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send `sig` to every process of the container; returns True (all were handled).

        SIGKILL goes through cgroup.kill when there is one (atomic against fork). Otherwise
        the cgroup is frozen while its pids are listed and signalled, so a forking process
        can't slip a child past us; a container that was paused stays paused, except for
        SIGKILL (a task frozen by the v1 freezer dies only once thawed).
        """
        was_frozen = self.frozen()
        kill_file = self._kill_file() if sig == signal.SIGKILL else None
        if kill_file:
            write(os.path.dirname(kill_file), "cgroup.kill", "1")
        else:
            froze = False
            if not was_frozen:
                try:
                    self.freeze(True)
                    froze = True
                except PyruncError:
                    pass  # no freezer: signal anyway, as runc does
            try:
                for pid in self.pids():
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            finally:
                if froze:
                    self.freeze(False)
        if was_frozen and sig == signal.SIGKILL:
            self.freeze(False)
        return True


def made_dirs(path: str) -> list[str]:
    """The directories `os.makedirs(path)` would create, parents first."""
    out = []
    while path and path != "/" and not os.path.isdir(path):
        out.append(path)
        path = os.path.dirname(path)
    return out[::-1]


def unified_frozen(path: str) -> bool:
    """A cgroup2 directory is frozen, or freezes what enters it (a frozen parent)."""
    if read(path, "cgroup.freeze") == "1":
        return True
    events = read(path, "cgroup.events")
    return events is not None and "frozen 1" in events.splitlines()


def sub_path(base: str, sub: str) -> str:
    """`base`/`sub` for exec --cgroup; a path that leaves `base` is refused, as runc does."""
    full = os.path.normpath(os.path.join(base, sub.lstrip("/")))
    if full != base and not full.startswith(base.rstrip("/") + "/"):
        raise PyruncError(f"{sub} is not a sub cgroup path")
    return full


def enter_dir(path: str, name: str, pid: int) -> None:
    """Write `pid` to `name` (tasks or cgroup.procs) of one cgroup directory; a missing
    directory is reported as runc reports it (exec --cgroup names a sub-cgroup)."""
    if not os.path.isdir(path):
        raise PyruncError(f"error adding pid {pid} to cgroups: "
                          f"{os.path.join(path, 'cgroup.procs')}: no such file or directory")
    try:
        with open(os.path.join(path, name), "w") as f:
            f.write(str(pid))
    except OSError as e:
        raise PyruncError(f"error adding pid {pid} to cgroups: {os.path.join(path, name)}: "
                          f"{e.strerror}") from None


def write(path: str, name: str, value: str) -> None:
    """Write one cgroup file; the error names the file and the kernel's reason."""
    try:
        with open(os.path.join(path, name), "w") as f:
            f.write(value)
    except OSError as e:
        raise PyruncError(f"cgroup {os.path.join(path, name)}: cannot write {value!r}: "
                          f"{e.strerror}") from None


def read(path: str, name: str) -> str | None:
    """One cgroup file's text, stripped; None when the file (or the cgroup) is gone."""
    try:
        with open(os.path.join(path, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def read_pids(path: str) -> list[int]:
    """Pids in cgroup.procs of `path` and of every cgroup below it (the container may make
    sub-cgroups of its own); bounded so a hostile deep tree can't stall us."""
    out: list[int] = []
    seen = 0
    for dirpath, dirnames, _files in os.walk(path):
        seen += 1
        if seen > 10000:
            break
        dirnames.sort()
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def number(value: "Any", field: str) -> int:
    """An integer from linux.resources (bools and strings are rejected, naming the field)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PyruncError(f"linux.resources.{field}: must be an integer, not {value!r}")
    return value


def remove_tree(path: str) -> None:
    """Remove a cgroup and any sub-cgroups the container made, deepest first."""
    try:
        os.rmdir(path)  # the usual case: no sub-cgroup, no task left
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # EBUSY: sub-cgroups, or tasks the kernel is still reaping
    subdirs = [d for d, _sub, _files in os.walk(path)]
    for d in reversed(subdirs[1:]):
        rmdir_retry(d)
    rmdir_retry(path)


def rmdir_retry(path: str, tries: int = 50) -> None:
    """rmdir a cgroup; EBUSY lasts until the kernel finishes reaping the last task."""
    for _ in range(tries):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            import errno  # only on a failure: delete's path stays one module shorter
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    raise PyruncError(f"cgroup {path}: still busy after {tries} tries")
