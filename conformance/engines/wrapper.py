"""An argv-logging wrapper around pyrunc for the engine suites.

Engines call the wrapper as their runtime. It records every call (argv, exit code), the stderr
of calls that don't hand their stdio to a container, the tail of the shim's `--log` file when a
call fails, the resources JSON of `update --resources -`, and a copy of each bundle's
config.json, so a failing engine test names the exact runtime argv and pyrunc's own words.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from conformance.engines.bundles import PYRUNC

# Calls whose stdio becomes the container's (or the exec'd process's): never redirect those.
_STDIO_PASSING = ("create", "run", "exec", "restore")

_SCRIPT = r"""#!/bin/bash
# argv-logging wrapper written by conformance/engines/wrapper.py
real=@REAL@
dir=@DIR@
log="$dir/calls.log"
id="$$-${EPOCHREALTIME/./}"
sub=
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in
    --root|--log|--log-format|--criu|--rootless) skip=1 ;;
    -*) ;;
    *) sub=$a; break ;;
  esac
done
prev=
shimlog=
resources=0
for a in "$@"; do
  case "$prev" in
    --bundle|-b) [ -f "$a/config.json" ] && cp "$a/config.json" "$dir/$id.config.json" ;;
    --log) shimlog=$a ;;
    --resources|-r) [ "$a" = - ] && resources=1 ;;
  esac
  prev=$a
done
printf -v line '\t%s' "$@"
printf 'start\t%s%s\n' "$id" "$line" >> "$log"
case " @STDIO@ " in
  *" $sub "*)
    "$real" "$@"
    rc=$? ;;
  *)
    if [ "$sub" = update ] && [ "$resources" = 1 ]; then
      cat > "$dir/$id.stdin"
      "$real" "$@" < "$dir/$id.stdin" 2> "$dir/$id.err"
    else
      "$real" "$@" 2> "$dir/$id.err"
    fi
    rc=$?
    cat "$dir/$id.err" >&2 ;;
esac
if [ "$rc" != 0 ] && [ -n "$shimlog" ] && [ -f "$shimlog" ]; then
  tail -n 5 "$shimlog" >> "$dir/$id.err"
fi
printf 'end\t%s\t%s\n' "$id" "$rc" >> "$log"
exit "$rc"
"""


@dataclass
class Call:
    """One runtime invocation as the wrapper saw it."""

    pid: str
    argv: list[str]
    rc: int | None
    directory: str

    @property
    def sub(self) -> str:
        skip = False
        for a in self.argv:
            if skip:
                skip = False
            elif a in ("--root", "--log", "--log-format", "--criu", "--rootless"):
                skip = True
            elif not a.startswith("-"):
                return a
        return ""

    @property
    def args(self) -> list[str]:
        """argv from the subcommand on (global flags dropped)."""
        i = self.argv.index(self.sub) if self.sub else len(self.argv)
        return self.argv[i:]

    def _read(self, suffix: str) -> str:
        try:
            with open(os.path.join(self.directory, f"{self.pid}.{suffix}"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def stderr(self) -> str:
        return self._read("err")

    @property
    def stdin(self) -> str:
        return self._read("stdin")

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, f"{self.pid}.config.json")

    def __str__(self) -> str:
        line = f"pyrunc {shlex.join(self.argv)}  -> rc={self.rc}"
        if self.stdin:
            line += f"\n    stdin: {self.stdin.strip()[:400]}"
        if self.stderr.strip():
            line += "\n    stderr: " + self.stderr.strip().replace("\n", "\n            ")
        if os.path.exists(self.config_path):
            line += f"\n    config: {self.config_path}"
        return line


class Wrapper:
    """A wrapper script in `directory` that runs `real` and logs each call."""

    def __init__(self, directory: str, real: str = PYRUNC) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.path = os.path.join(directory, "pyrunc")
        script = (_SCRIPT.replace("@REAL@", shlex.quote(real))
                  .replace("@DIR@", shlex.quote(directory))
                  .replace("@STDIO@", " ".join(_STDIO_PASSING)))
        with open(self.path, "w") as f:
            f.write(script)
        os.chmod(self.path, 0o755)
        open(os.path.join(directory, "calls.log"), "a").close()

    def calls(self) -> list[Call]:
        found: dict[str, Call] = {}
        order: list[Call] = []
        with open(os.path.join(self.directory, "calls.log"), errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if parts[0] == "start" and len(parts) >= 2:
                    c = Call(parts[1], parts[2:], None, self.directory)
                    found[parts[1]] = c
                    order.append(c)
                elif parts[0] == "end" and len(parts) == 3 and parts[1] in found:
                    found[parts[1]].rc = int(parts[2])
        return order

    def mark(self) -> int:
        """A position in the call log; pass it to since()."""
        return len(self.calls())

    def since(self, mark: int, cid: str | None = None) -> list[Call]:
        calls = self.calls()[mark:]
        if cid is not None:
            calls = [c for c in calls if cid in c.argv]
        return calls

    def report(self, mark: int) -> str:
        calls = self.since(mark)
        if not calls:
            return "pyrunc was not called"
        return "pyrunc calls:\n  " + "\n  ".join(str(c) for c in calls)
