"""COPY/ADD --chmod: octal (`0755`) or symbolic (`u+x,g-w`, `a=rX`), as BuildKit takes them.

Symbolic modes follow chmod(1) without a umask (BuildKit applies none): comma-separated
clauses `[ugoa]*([-+=][rwxXst]*)+`; no `who` means `a`; `X` is execute for directories and
for files that already have an execute bit; `s` is setuid/setgid for `u`/`g`, `t` the sticky
bit for `o`. The result replaces each copied entry's permission bits, directories included.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: (old permission bits, is a directory) -> new permission bits
ModeFn = Callable[[int, bool], int]

_OCTAL = re.compile(r"^[0-7]{1,4}$")
_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=][rwxXst]*)+)$")
_ACTION = re.compile(r"([-+=])([rwxXst]*)")
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_BITS = {"r": 0o444, "w": 0o222, "x": 0o111}


def compile_mode(spec: str) -> ModeFn:
    """A function giving an entry's new mode; ValueError for a spec BuildKit refuses."""
    if _OCTAL.match(spec):
        value = int(spec, 8)
        return lambda old, is_dir: value
    clauses = []
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        if not m:
            raise ValueError(f"invalid chmod value {spec!r}: want octal (0755) or symbolic "
                             "(u+x,g-w)")
        who = m.group(1) or "a"
        mask = 0
        for w in ("ugo" if "a" in who else who):
            mask |= _WHO[w]
        clauses.append((mask, _ACTION.findall(m.group(2))))

    def apply(old: int, is_dir: bool) -> int:
        mode = old & 0o7777
        for mask, actions in clauses:
            for op, perms in actions:
                bits = 0
                for c in perms:
                    if c in _BITS:
                        bits |= _BITS[c]
                    elif c == "X" and (is_dir or mode & 0o111):
                        bits |= 0o111
                    elif c == "s":
                        bits |= 0o6000
                    elif c == "t":
                        bits |= 0o1000
                bits &= mask
                if op == "+":
                    mode |= bits
                elif op == "-":
                    mode &= ~bits
                else:
                    mode = (mode & ~mask) | bits
        return mode
    return apply
