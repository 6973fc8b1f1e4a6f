"""docker's exit-status contract for `run` and `exec`: 125 when the tool itself failed,
126 when the command cannot be executed, 127 when it is not found, else the command's own
status. The runtime reports exec failures as text (runc's wording), so they are classified
by it, as docker's daemon does."""

from __future__ import annotations

TOOL_FAILED = 125
CANNOT_EXECUTE = 126
NOT_FOUND = 127


def for_start_error(message: str) -> int:
    """The exit status for a container (or exec'd process) that failed to start."""
    m = message.lower()
    if 'exec: "' not in m and "exec failed" not in m:
        return TOOL_FAILED  # a mount, network or cgroup failure is the tool's
    if "executable file not found" in m or "no such file or directory" in m:
        return NOT_FOUND
    if "permission denied" in m or "exec format error" in m or "is a directory" in m:
        return CANNOT_EXECUTE
    return TOOL_FAILED
