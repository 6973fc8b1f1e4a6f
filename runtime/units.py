"""The one reading of byte sizes and durations, for both programs: pyrunc's update --memory*
and events --interval (runtime/verbs/cli.py), and imagetool's values (Dockerfile flags and
mounts, the container verbs' --memory and tmpfs sizes, events --since/--until) through
imagetool/units.py. Only `re` is imported; the runtime imports this lazily.

- `parse_bytes`: docker's go-units RAMInBytes, which both `docker run --memory` and
  BuildKit's `--mount=type=tmpfs,size=` use: a decimal number, an optional space, an
  optional binary unit k/m/g/t/p (any case, optionally followed by i and/or b): `64m`,
  `1.5g`, `512KiB`, `100`.
- `parse_duration`: Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`, `-1s`, `0`) in
  nanoseconds, as BuildKit reads HEALTHCHECK's --interval and kin.

Both raise ValueError naming the text; callers add the flag or field in their own words."""

from __future__ import annotations

import re

_BYTES = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
       "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_bytes(text: str) -> int:
    """`64m` -> 67108864 (units are powers of 1024); ValueError if it is no size."""
    m = _BYTES.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"invalid size {text!r}")
    return int(float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()])


def is_bytes(text: str) -> bool:
    """Whether parse_bytes accepts `text`."""
    return isinstance(text, str) and _BYTES.fullmatch(text) is not None


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`) -> nanoseconds; ValueError if the
    text is not one."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))
