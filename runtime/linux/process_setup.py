"""What every process entering a container gets before execve, shared by init and exec:
rlimits, oom score, user and groups, capabilities, no_new_privs, umask, signals, fds, and
resolving the program on the container's PATH."""

from __future__ import annotations

import _signal as signal  # `signal` imports enum: ~1.5 ms
import os
import resource  # imported here: after pivot_root the stdlib is out of reach
import stat

from runtime.errors import ConfigError, PyruncError
from runtime.linux import capabilities
from runtime.linux import syscalls as sc

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def set_rlimits(rlimits: list[dict[str, Any]], where: str) -> None:
    for i, r in enumerate(rlimits):
        num = getattr(resource, r["type"], None)
        if num is None:
            raise ConfigError(f"{where}[{i}].type", f"unknown rlimit {r['type']}")
        try:
            resource.setrlimit(num, (r["soft"], r["hard"]))
        except (ValueError, OSError) as e:
            cur = resource.getrlimit(num)
            raise ConfigError(f"{where}[{i}]", f"cannot set {r['type']} to "
                              f"{r['soft']}/{r['hard']} ({e}); this host allows at most "
                              f"hard {cur[1]}") from None


def chdir_inside(cwd: str) -> None:
    """chdir, then prove the result is reachable from our root: a cwd such as
    /proc/self/fd/N naming a host directory would otherwise escape (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except OSError as e:
        raise PyruncError(f"process.cwd: cannot chdir to {cwd}: {e.strerror}") from None
    try:
        where = os.getcwd()
    except OSError:
        where = ""
    if not where.startswith("/"):
        raise PyruncError(f"process.cwd: {cwd} is outside the container's root")


def set_oom_score_adj(value: int | None) -> None:
    if value is None:
        return
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


_PROC_ATTRS = ("scheduler", "ioPriority", "execCPUAffinity")
_LINUX_ATTRS = ("personality", "memoryPolicy")


def preload_attrs(proc: dict[str, Any], linux: dict[str, Any]) -> bool:
    """Import process_attrs now, while the host's files are reachable, if the config uses
    one of its fields (most don't: it stays off the hot path). True if it does."""
    if any(proc.get(k) for k in _PROC_ATTRS) or any(linux.get(k) for k in _LINUX_ATTRS):
        from runtime.linux import process_attrs  # noqa: F401
        return True
    return False


def apply_attrs(proc: dict[str, Any], linux: dict[str, Any]) -> None:
    """process.scheduler/ioPriority, linux.memoryPolicy/personality (process_attrs.apply),
    for the init and exec alike; preload_attrs must have run before the namespaces."""
    if preload_attrs(proc, linux):
        from runtime.linux import process_attrs
        process_attrs.apply(proc, linux)


def exec_affinity(pid: int, proc: dict[str, Any], which: str) -> None:
    """process.execCPUAffinity's `initial` or `final` for an exec'd process (not the init)."""
    if proc.get("execCPUAffinity"):
        from runtime.linux import process_attrs
        process_attrs.set_affinity(pid, proc["execCPUAffinity"], which)


def set_user(proc: dict[str, Any], where: str) -> None:
    """Groups, gid, uid, then the capability sets and no_new_privs, in the order the kernel
    needs: bounding drop and setgroups while still privileged, KEEPCAPS across setuid."""
    user = proc.get("user", {})
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    # No capabilities object means none at all (runc's reading), not "keep the caller's".
    masks = capabilities.masks(proc.get("capabilities") or {}, f"{where}.capabilities")
    capabilities.check_grantable(masks, f"{where}.capabilities")
    capabilities.drop_bounding(masks["bounding"])
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    groups = list(dict.fromkeys(user.get("additionalGids", [])))  # runc drops duplicates
    try:
        os.setgroups(groups)
    except PermissionError:
        if groups:
            raise PyruncError(f"{where}.user.additionalGids: setgroups is denied in this user "
                              "namespace") from None
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise PyruncError(f"{where}.user: cannot switch to uid {uid} gid {gid}: "
                          f"{e.strerror} (is it mapped in the user namespace?)") from None
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    capabilities.apply(masks)
    if proc.get("noNewPrivileges"):
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    os.umask(user.get("umask", 0o022))


def lookup_home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def build_env(proc: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in proc.get("env", []):
        k, _, v = item.partition("=")
        env[k] = v
    if "HOME" not in env:
        env["HOME"] = lookup_home(proc.get("user", {}).get("uid", 0))
    return env


def find_program(arg0: str, env: dict[str, str]) -> str:
    """The path execve will run: arg0 itself when it has a '/', else a search of $PATH."""
    if "/" in arg0:
        try:
            st = os.stat(arg0)
        except OSError:
            raise PyruncError(f'exec: "{arg0}": stat {arg0}: no such file or directory') from None
        # As runc: a directory or a file without an x bit fails `create`, not `start`.
        if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
            raise PyruncError(f'exec: "{arg0}": permission denied')
        return arg0
    for d in env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                     ).split(":"):
        cand = os.path.join(d or ".", arg0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise PyruncError(f'exec: "{arg0}": executable file not found in $PATH')


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ and handles SIGINT; execve would pass that on."""
    for sig in range(1, signal.NSIG):
        try:
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_fds_from(first: int, keep: tuple[int, ...] = ()) -> None:
    """Close every fd >= first except `keep`: nothing of ours leaks in (CVE-2024-21626)."""
    try:
        fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
    except OSError:
        fds = list(range(first, 1024))
    for fd in fds:
        if fd >= first and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def execve(program: str, args: list[str], env: dict[str, str]) -> None:
    try:
        os.execve(program, args, env)
    except OSError as e:
        raise PyruncError(f'exec: "{args[0]}": {e.strerror}') from None
