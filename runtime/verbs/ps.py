"""`ps`: the processes of a container's cgroup, as a JSON pid list or `ps` lines."""

from __future__ import annotations

import json
import subprocess
import sys

from runtime.errors import PyruncError
from runtime.verbs import manager_of

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import IO

    from runtime.container import Container


def ps(container: Container, fmt: str = "table", ps_args: list[str] | None = None,
       out: IO[str] | None = None) -> None:
    """json: the container's host pids as a JSON array (what containerd's shim parses).
    table: `ps` (default `-ef`) filtered to the container's processes, header kept."""
    out = out or sys.stdout
    pids = manager_of(container).pids()
    if fmt == "json":
        out.write(json.dumps(pids) + "\n")
        out.flush()
        return
    if fmt != "table":
        raise PyruncError(f"invalid format option {fmt!r}: use table or json")
    args = list(ps_args or []) or ["-ef"]
    try:
        p = subprocess.run(["ps", *args], capture_output=True,
                           text=True, check=False)
    except FileNotFoundError:
        raise PyruncError("ps: the ps command is not installed") from None
    if p.returncode != 0:
        raise PyruncError(f"ps {' '.join(args)}: {p.stderr.strip() or 'failed'}")
    lines = p.stdout.splitlines()
    if not lines:
        raise PyruncError("ps printed nothing")
    header = lines[0].split()
    if "PID" not in header:
        raise PyruncError("couldn't find PID field in ps output")
    col = header.index("PID")
    want = set(pids)
    out.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in want:
            out.write(line + "\n")
    out.flush()
