"""run/create's storage flags, parsed: `-v /HOST:/CTR[:ro]` (bind), `-v NAME:/CTR[:ro]`
(named volume), `-v /CTR` (anonymous volume), `--mount type=bind|volume|tmpfs,...` and
`--tmpfs /CTR[:OPTIONS]`. Returns the OCI mounts (binds, tmpfs) and the volume references
the record keeps ({"Name", "Destination", "ReadOnly", "Anonymous"}); errors name the flag."""

from __future__ import annotations

import argparse
import os
import secrets
from typing import Any

from imagetool.run.options import parse_bytes, volume
from imagetool.run.records import ContainerError


def _dest(flag: str, text: str, dest: str) -> str:
    if not dest.startswith("/"):
        raise ContainerError(f"{flag} {text}: the container path must be absolute")
    return os.path.normpath(dest)


def _tmpfs(dest: str, opts: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", *opts]}


def _v(text: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    parts = text.split(":")
    if len(parts) == 1:  # -v /CTR: an anonymous volume
        return None, {"Name": secrets.token_hex(32), "Destination": _dest("-v", text, text),
                      "ReadOnly": False, "Anonymous": True}
    if parts[0].startswith("/") or parts[0].startswith("."):
        return volume(text), None
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ContainerError(f"-v {text}: want NAME:/CONTAINER[:ro|rw]")
    from imagetool.run import volumes
    volumes.check_name(parts[0])
    return None, {"Name": parts[0], "Destination": _dest("-v", text, parts[1]),
                  "ReadOnly": len(parts) == 3 and parts[2] == "ro", "Anonymous": False}


def _mount(text: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    kv: dict[str, str] = {}
    flags: set[str] = set()
    for item in text.split(","):
        k, eq, v = item.partition("=")
        if eq:
            kv[k.strip()] = v.strip()
        else:
            flags.add(k.strip())
    kind = kv.pop("type", "volume")
    src = kv.pop("source", None) or kv.pop("src", None)
    dst = kv.pop("destination", None) or kv.pop("dst", None) or kv.pop("target", None)
    if not dst:
        raise ContainerError(f"--mount {text}: give target=/PATH")
    dst = _dest("--mount", text, dst)
    ro = "readonly" in flags or "ro" in flags or kv.pop("readonly", "false") in ("true", "1") \
        or kv.pop("ro", "false") in ("true", "1")
    if kind == "bind":
        if not src or not os.path.isabs(src):
            raise ContainerError(f"--mount {text}: a bind needs an absolute source=")
        if not os.path.exists(src):
            raise ContainerError(f"--mount {text}: bind source path does not exist: {src}")
        kv.pop("bind-propagation", None)
        leftover = kv
        m = {"destination": dst, "type": "bind", "source": src,
             "options": ["rbind", "ro" if ro else "rw"]}
    elif kind == "volume":
        anonymous = not src
        if src:
            from imagetool.run import volumes
            volumes.check_name(src)
        leftover = kv
        vol = {"Name": src or secrets.token_hex(32), "Destination": dst, "ReadOnly": ro,
               "Anonymous": anonymous}
        if leftover:
            raise ContainerError(f"--mount {text}: unknown option {next(iter(leftover))}")
        return None, vol
    elif kind == "tmpfs":
        if src:
            raise ContainerError(f"--mount {text}: a tmpfs takes no source")
        opts = []
        if "tmpfs-size" in kv:
            opts.append(f"size={parse_bytes(kv.pop('tmpfs-size'))}")
        if "tmpfs-mode" in kv:
            mode = kv.pop("tmpfs-mode")
            if not mode.isdigit():
                raise ContainerError(f"--mount {text}: tmpfs-mode is octal, e.g. 1777")
            opts.append(f"mode={mode}")
        leftover = kv
        m = _tmpfs(dst, (["ro"] if ro else []) + opts)
    else:
        raise ContainerError(f"--mount {text}: type must be bind, volume or tmpfs")
    if leftover:
        raise ContainerError(f"--mount {text}: unknown option {next(iter(leftover))}")
    return m, None


def parse(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(OCI mounts, volume references) of -v, --mount and --tmpfs."""
    mounts: list[dict[str, Any]] = []
    vols: list[dict[str, Any]] = []
    items = [(_v, t) for t in args.volume or []] + [(_mount, t) for t in args.mount or []]
    for fn, text in items:
        m, v = fn(text)
        if m is not None:
            mounts.append(m)
        if v is not None:
            vols.append(v)
    for text in args.tmpfs or []:
        dest, _, opts = text.partition(":")
        mounts.append(_tmpfs(_dest("--tmpfs", text, dest),
                             [o for o in opts.split(",") if o]))
    seen: set[str] = set()
    for d in [m["destination"] for m in mounts] + [v["Destination"] for v in vols]:
        if d in seen:
            raise ContainerError(f"duplicate mount point: {d}")
        seen.add(d)
    return mounts, vols
