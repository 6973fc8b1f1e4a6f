"""imagetool's name for the one byte-size and Go-duration reader, runtime/units.py (the
runtime never imports imagetool, so the reader lives on its side):

- `parse_bytes`: docker's go-units RAMInBytes (`64m`, `1.5g`, `512KiB`, `100`), as
  `docker run --memory` and BuildKit's `--mount=type=tmpfs,size=` read sizes;
- `parse_duration`: Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`) in nanoseconds.

Both raise ValueError naming the text; callers add the flag or field."""

from __future__ import annotations

from runtime.units import is_bytes, parse_bytes, parse_duration

__all__ = ["is_bytes", "parse_bytes", "parse_duration"]
