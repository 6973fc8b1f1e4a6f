"""The last steps of every process entering a container, shared by the init and `exec` (as
runc's finalizeNamespace is): one security-ordered sequence, so a fix lands once.

`prepare` runs, in this order: console (then `after_console`), cwd (checked to be inside the
root), rlimits, oom score (exec only: the init sets it before its mounts), scheduler/ioPriority/
personality/memoryPolicy, env, seccomp when it must load before the user switch (no
noNewPrivileges: CAP_SYS_ADMIN is still held), user and capabilities, the program's lookup on
the container's PATH, seccomp otherwise. `launch` then resets signals, closes every fd but
the stdio, the preserved ones and `keep`, and execs.
"""

from __future__ import annotations

import os

from runtime.linux import process_setup as ps

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runtime.linux.seccomp import Filter


def prepare(proc: dict[str, Any], linux: dict[str, Any], sec: Filter | None, *,
            console_fd: int | None = None, console_bind: bool = True,
            after_console: Callable[[], None] | None = None,
            oom_score_adj: bool = False) -> tuple[str, dict[str, str]]:
    """Everything up to (not including) execve; returns (program path, environment).
    `console_fd` is set up as the controlling terminal (bound over /dev/console when
    `console_bind`) and closed; `sec` is the seccomp filter prepared on the host side."""
    if console_fd is not None:
        from runtime.console import setup_console
        setup_console(console_fd, proc.get("user", {}).get("uid", 0), bind=console_bind,
                      size=proc.get("consoleSize"))
        os.close(console_fd)
    if after_console is not None:
        after_console()
    ps.chdir_inside(proc.get("cwd", "/"))
    ps.set_rlimits(proc.get("rlimits", []), "process.rlimits")
    if oom_score_adj:
        ps.set_oom_score_adj(proc.get("oomScoreAdj"))
    ps.apply_attrs(proc, linux)  # scheduler, ioPriority, personality...
    env = ps.build_env(proc)
    if sec is not None and sec.early:
        sec.load()  # no noNewPrivileges: load while CAP_SYS_ADMIN is still held
    ps.set_user(proc, "process")
    program = ps.find_program(proc["args"][0], env)
    if sec is not None:
        sec.load()  # last (a no-op when it loaded early)
    return program, env


def launch(program: str, args: list[str], env: dict[str, str], preserve_fds: int,
           keep: tuple[int, ...]) -> None:
    """Default signals, no fd of ours but `keep` (O_CLOEXEC ones execve closes), the
    preserved fds 3..3+preserve_fds-1 inheritable, then execve. Raises PyruncError if the
    execve fails; returns never otherwise."""
    ps.reset_signals()
    ps.close_fds_from(3 + preserve_fds, keep=keep)
    for fd in range(3, 3 + preserve_fds):
        os.set_inheritable(fd, True)
    ps.execve(program, args, env)
