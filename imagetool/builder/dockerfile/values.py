"""Flag and value parsers (BuildKit's instructions/bflag.go, commands_runmount.go): each
instruction's `--flags`, durations, signals, ports, chmod/checksum values and `RUN --mount`.

The instruction builders check values as written (skipping those with `$`); expand.py checks
them again once substituted.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from imagetool.units import is_bytes, parse_duration  # noqa: F401  (parse_duration: API)
from runtime import signals

from .errors import InstructionError as _Fail
from .model import Mount

_OCTAL_MODE = re.compile(r"^[0-7]{1,4}$")
_SYMBOLIC_MODE = re.compile(r"^[ugoa]*[-+=][rwxXst]*([-+=][rwxXst]*)*(,[ugoa]*[-+=][rwxXst]*)*$")
_DIGEST = {"sha256": 64, "sha384": 96, "sha512": 128}



_FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "string"},
    "RUN": {"mount": "strings", "network": "string", "security": "string"},
    "COPY": {"from": "string", "chown": "string", "chmod": "string", "link": "bool",
             "parents": "bool", "exclude": "strings"},
    "ADD": {"chown": "string", "chmod": "string", "link": "bool", "checksum": "string",
            "keep-git-dir": "bool", "exclude": "strings"},
    "HEALTHCHECK": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
}


def parse_flags(cmd: str, words: list[str]) -> dict[str, Any]:
    allowed = _FLAGS.get(cmd, {})
    out: dict[str, Any] = {}
    for word in words:
        if not word.startswith("--"):
            raise _Fail(f"{cmd}: flag should start with --: {word}")
        name, eq, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            valid = ", ".join("--" + f for f in allowed) or "none"
            hint = difflib.get_close_matches(name, list(allowed), n=1)
            extra = f"; did you mean --{hint[0]}?" if hint else ""
            raise _Fail(f"{cmd} does not take the flag --{name} (valid flags: {valid}){extra}")
        if name in out and kind != "strings":
            raise _Fail(f"{cmd}: duplicate flag specified: --{name}")
        if kind == "bool":
            if eq and value == "":
                raise _Fail(f"{cmd}: missing a value on flag: --{name}")
            low = value.lower()
            if low in ("", "true"):
                out[name] = True
            elif low == "false":
                out[name] = False
            else:
                raise _Fail(f"{cmd}: expecting boolean value for flag --{name}, not: {value}")
        else:
            if not eq:
                raise _Fail(f"{cmd}: missing a value on flag: --{name}")
            if kind == "strings":
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Validation helpers shared with expand.py


def parse_signal(text: str) -> int:
    """A STOPSIGNAL's number (runtime/signals.py: `SIGTERM`, `TERM`, `RTMIN+3`, `9`; not 0);
    ValueError if it names no signal."""
    return signals.parse(text)


_PROTOS = ("tcp", "udp", "sctp")


def exposed_ports(specs: list[str]) -> list[str]:
    """EXPOSE words (after expansion) -> the image config's keys: `80/tcp`, ranges unrolled."""
    out: list[str] = []
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in _PROTOS:
            raise ValueError(f"invalid proto: {spec.partition('/')[2]}")
        if ":" in port:  # ip:hostPort:containerPort or hostPort:containerPort
            port = port.rsplit(":", 1)[1]
        lo, dash, hi = port.partition("-")
        try:
            start = int(lo, 10)
            end = int(hi, 10) if dash else start
        except ValueError:
            raise ValueError(f"invalid containerPort: {port}") from None
        if not (0 < start <= 65535 and 0 < end <= 65535):
            raise ValueError(f"invalid containerPort: {port}")
        if end < start:
            raise ValueError(f"invalid port range: {port}")
        for p in range(start, end + 1):
            key = f"{p}/{proto}"
            if key not in out:
                out.append(key)
    return out


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


_SCP_LIKE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*@[A-Za-z0-9.-]+:")


def is_git_url(src: str) -> bool:
    """A git repository as BuildKit's ADD tells one: git://, ssh://, scp-like user@host:path,
    or an http(s) URL whose path ends in .git."""
    if src.startswith(("git://", "ssh://")) or _SCP_LIKE.match(src):
        return True
    if is_url(src):
        path = src.split("#", 1)[0].split("?", 1)[0]
        return path.endswith(".git")
    return False


def check_chmod(value: str) -> None:
    if not (_OCTAL_MODE.match(value) or _SYMBOLIC_MODE.match(value)):
        raise ValueError(f"invalid chmod value {value!r}: want octal (0755) or symbolic (u+x)")


def check_digest(value: str) -> None:
    algo, _, hexpart = value.partition(":")
    want = _DIGEST.get(algo)
    if want is None or len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise ValueError(f"invalid checksum {value!r}: want sha256:<64 hex digits>")


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_MOUNT_KEYS = {
    "type", "target", "dst", "destination", "source", "src", "from", "readonly", "ro",
    "readwrite", "rw", "id", "sharing", "mode", "uid", "gid", "required", "size", "env",
}
_TARGET_KEYS = ("target", "dst", "destination")


def _csv_fields(spec: str) -> list[str]:
    """encoding/csv's reading of one record: commas separate, double quotes group."""
    fields: list[str] = []
    cur: list[str] = []
    i, n = 0, len(spec)
    at_start = True
    while i <= n:
        if i == n:
            fields.append("".join(cur))
            break
        ch = spec[i]
        if at_start and ch == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quote in {spec!r}")
                if spec[i] == '"':
                    if i + 1 < n and spec[i + 1] == '"':
                        cur.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                cur.append(spec[i])
                i += 1
            at_start = False
            continue
        if ch == ",":
            fields.append("".join(cur))
            cur, at_start = [], True
        else:
            cur.append(ch)
            at_start = False
        i += 1
    return fields


def _as_bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    low = value.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_mount(spec: str, expand: Any = None) -> Mount:
    """One `--mount` value. `expand(word)` substitutes variables first (None: keep as written,
    and leave values with `$` unchecked)."""
    m = Mount(spec=spec)
    ro: bool | None = None
    pending: dict[str, str] = {}
    for item in _csv_fields(spec):
        if item == "":
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key not in _MOUNT_KEYS:
            raise ValueError(f"unexpected key {key!r} in {spec!r}")
        val: str | None = value if eq else None
        if val is not None and expand is not None:
            val = expand(val)
        if key in ("readonly", "ro"):
            ro = _as_bool(key, val)
            continue
        if key in ("readwrite", "rw"):
            ro = not _as_bool(key, val)
            continue
        if key == "required":
            m.required = _as_bool(key, val)
            continue
        if val is None:
            raise ValueError(f"invalid value for {key}: missing '=' in {spec!r}")
        pending[key] = val
    for key, val in pending.items():
        if key == "type":
            if val.lower() not in _MOUNT_TYPES:
                raise ValueError(f"unsupported mount type {val!r} (want one of "
                                 f"{', '.join(_MOUNT_TYPES)})")
            m.type = val.lower()
        elif key in _TARGET_KEYS:
            m.target = val
        elif key in ("source", "src"):
            m.source = val
        elif key == "from":
            m.from_stage = val
        else:
            setattr(m, key, val)
    checked = expand is not None
    if m.sharing is not None and (checked or "$" not in m.sharing):
        if m.sharing not in ("shared", "private", "locked"):
            raise ValueError(f"unsupported sharing value {m.sharing!r} "
                             "(want shared, private or locked)")
    if m.mode is not None and (checked or "$" not in m.mode):
        if not re.fullmatch(r"[0-7]{1,4}", m.mode):
            raise ValueError(f"invalid mode {m.mode!r}: want octal")
    for key in ("uid", "gid"):
        v = getattr(m, key)
        if v is not None and (checked or "$" not in v) and not v.isdigit():
            raise ValueError(f"invalid {key} {v!r}: want a number")
    if m.size is not None and (checked or "$" not in m.size) and not is_bytes(m.size):
        raise ValueError(f"invalid size {m.size!r}")
    only = {"sharing": ("cache",), "size": ("tmpfs",), "env": ("secret",),
            "from": ("bind", "cache"), "id": ("cache", "secret", "ssh")}
    for key, types in only.items():
        present = m.from_stage if key == "from" else getattr(m, key)
        if present is not None and m.type not in types:
            raise ValueError(f"mount type {m.type!r} does not take {key}=")
    if m.required and m.type not in ("secret", "ssh"):
        raise ValueError(f"mount type {m.type!r} does not take required")
    for key in ("mode", "uid", "gid"):
        if getattr(m, key) is not None and m.type not in ("cache", "secret", "ssh"):
            raise ValueError(f"mount type {m.type!r} does not take {key}=")
    if m.type in ("bind", "cache", "tmpfs") and not m.target:
        raise ValueError(f"mount type {m.type!r} needs a target= in {spec!r}")
    if m.type == "secret":
        # BuildKit: source= is the secret's id too; the id defaults to the target's name
        if m.source and m.id:
            raise ValueError(f"secret mount takes source= or id=, not both, in {spec!r}")
        m.id = m.id or m.source
        m.source = None
        if not m.id and not m.target:
            raise ValueError(f"secret mount needs an id= or a target= in {spec!r}")
        if not m.id and m.target:
            m.id = os.path.basename(m.target.rstrip("/"))
        if not m.target and not m.env:
            m.target = f"/run/secrets/{os.path.basename(m.id or '')}"  # m.id is set here
    if m.type == "ssh" and not m.id:
        m.id = "default"
    if ro is None:
        ro = m.type == "bind"
    m.readonly = ro
    return m

