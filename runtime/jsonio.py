"""JSON for the hot path on the C accelerator `_json` alone.

`import json` costs ~7 ms per pyrunc call because json.decoder imports `re` (and `re`
imports `enum`); the C scanner and encoder underneath need neither. Errors are rare, so the
real json module is imported only to build a precise error message.
"""

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """The attributes _json.make_scanner reads, with json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict = {}


# typeshed types make_scanner's argument as a JSONDecoder; it reads only these attributes
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_WS = " \t\n\r"


def loads(data: bytes | str) -> "Any":
    """Parse one JSON document; ValueError (json.JSONDecodeError) when it is not one."""
    if isinstance(data, bytes):  # utf-8-sig by hand: that codec is one more module to load
        text = (data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode()
    else:
        text = data
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except (StopIteration, ValueError, SystemError) as e:
        # The C scanner builds its error from json.decoder, and fails with SystemError when
        # that module isn't imported: let the real json module produce the message.
        return _slow_loads(text, e)
    if text[end:].strip(_WS):
        return _slow_loads(text, None)
    return obj


def _slow_loads(text: str, _cause: BaseException | None) -> "Any":
    import json
    return json.loads(text)  # raises the standard, precise JSONDecodeError


def _no_default(o: "Any") -> "Any":
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None, ": ",
                             ", ", False, False, True)
_str = _json.encode_basestring_ascii
_compact = _json.make_encoder(None, _no_default, _json.encode_basestring, None, ":", ",",
                              False, False, True)
_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
               ("\u2029", "\\u2029"))


def dumps_go(obj: "Any") -> str:
    """obj as Go's encoding/json writes it (runc's `list --format json`, logrus' JSON lines):
    no spaces, non-ASCII as UTF-8, and <, >, &, U+2028, U+2029 escaped. Those characters
    only ever occur inside strings, so they are replaced in the whole text."""
    out = "".join(_compact(obj, 0))
    for raw, esc in _GO_ESCAPES:
        if raw in out:
            out = out.replace(raw, esc)
    return out


def dumps(obj: "Any", indent: int | None = None) -> str:
    """json.dumps(obj) or, with indent, the same pretty shape json.dumps(obj, indent=n)."""
    if indent is None:
        return "".join(_encode(obj, 0))
    out: list[str] = []
    _pretty(obj, out, " " * indent, 0)
    return "".join(out)


def _pretty(obj: "Any", out: list[str], step: str, level: int) -> None:
    if isinstance(obj, dict) and obj:
        inner = "\n" + step * (level + 1)
        out.append("{")
        for i, (k, v) in enumerate(obj.items()):
            out.append(("," if i else "") + inner + _str(str(k)) + ": ")
            _pretty(v, out, step, level + 1)
        out.append("\n" + step * level + "}")
    elif isinstance(obj, (list, tuple)) and obj:
        inner = "\n" + step * (level + 1)
        out.append("[")
        for i, v in enumerate(obj):
            out.append(("," if i else "") + inner)
            _pretty(v, out, step, level + 1)
        out.append("\n" + step * level + "]")
    else:
        out.append("".join(_encode(obj, 0)))
