"""`imagetool ps` in docker's shape: newest first, `Up 5 minutes`, `Exited (0) 1 second ago`,
the command quoted and cut with `…`, no PORTS once a container has exited, image names as
the user gave them; -a -q -n -l --filter --no-trunc --format."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from imagetool.run.records import ContainerError, Records, status

HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
           "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
           "CreatedAt": "CREATED AT", "State": "STATE", "Size": "SIZE", "Labels": "LABELS",
           "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES"}
DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t" \
          "{{.Ports}}\t{{.Names}}"


def human_duration(secs: float) -> str:
    """docker's units.HumanDuration."""
    if secs < 1:
        return "Less than a second"
    if int(secs) == 1:
        return "1 second"
    if secs < 60:
        return f"{int(secs)} seconds"
    minutes = int(secs // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(secs / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def epoch(stamp: str) -> float | None:
    """Seconds since the epoch of a record's RFC 3339 time, or None."""
    import calendar
    try:
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + \
            float("0." + (stamp[20:29].rstrip("Z") or "0"))
    except (ValueError, TypeError):
        return None


def since(stamp: str) -> str:
    t = epoch(stamp)
    return human_duration(max(0.0, time.time() - t)) if t is not None else ""


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def status_text(rec: dict[str, Any], st: str) -> str:
    s = rec.get("State") or {}
    if st == "running":
        return f"Up {since(s.get('StartedAt', ''))}"
    if st == "paused":
        return f"Up {since(s.get('StartedAt', ''))} (Paused)"
    if st == "restarting":
        return f"Restarting ({s.get('ExitCode')}) {since(s.get('FinishedAt', ''))} ago"
    if st == "exited":
        return f"Exited ({s.get('ExitCode')}) {since(s.get('FinishedAt', ''))} ago"
    return st.capitalize()


def image_text(rec: dict[str, Any]) -> str:
    """The image as the user named it (docker's Config.Image), else its short name."""
    given = (rec.get("Config") or {}).get("Image")
    if given:
        return given
    from imagetool import reference
    try:
        return reference.parse(rec.get("Image", "")).familiar()
    except reference.ReferenceError:
        return rec.get("Image", "")


def ports_text(rec: dict[str, Any], st: str) -> str:
    if st not in ("running", "paused"):
        return ""
    return ", ".join(f"{p['HostIp']}:{p['HostPort']}->{p['ContainerPort']}/{p['Proto']}"
                     for p in (rec.get("NetworkSettings") or {}).get("Ports") or [])


def row(rec: dict[str, Any], no_trunc: bool = False) -> dict[str, Any]:
    """docker's `ps --format '{{json .}}'` object for one record."""
    st = status(rec)
    cmd = " ".join([rec.get("Path", ""), *rec.get("Args", [])])
    mounts = [m.split(":")[0] for m in (rec.get("HostConfig") or {}).get("Binds") or []]
    return {"Command": json.dumps(cmd if no_trunc else ellipsis(cmd, 20), ensure_ascii=False),
            "CreatedAt": _go_time(rec.get("Created", "")),
            "ID": rec["Id"] if no_trunc else rec["Id"][:12], "Image": image_text(rec),
            "Labels": "", "LocalVolumes": "0", "Mounts": ",".join(mounts),
            "Names": rec.get("Name", ""),
            "Networks": (rec.get("HostConfig") or {}).get("NetworkMode", ""),
            "Ports": ports_text(rec, st), "RunningFor": f"{since(rec.get('Created', ''))} ago",
            "Size": "0B", "State": st, "Status": status_text(rec, st)}


def _go_time(stamp: str) -> str:
    t = epoch(stamp)
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(t)) if t else ""


def _match(rec: dict[str, Any], st: str, filters: list[str]) -> bool:
    for f in filters:
        key, _, want = f.partition("=")
        if key == "status" and st != want:
            return False
        if key == "name" and want not in rec.get("Name", ""):
            return False
        if key == "id" and not rec["Id"].startswith(want):
            return False
        if key == "ancestor" and want not in (rec.get("Image", ""), image_text(rec),
                                              rec.get("ImageID", "")) \
                and not rec.get("ImageID", "").split(":")[-1].startswith(want):
            return False
        if key == "exited" and (st != "exited" or
                                str((rec.get("State") or {}).get("ExitCode")) != want):
            return False
    return True


FILTER_KEYS = ("status", "name", "id", "ancestor", "exited")


def cmd_ps(args: argparse.Namespace) -> int:
    for f in args.filter or []:
        if f.partition("=")[0] not in FILTER_KEYS or "=" not in f:
            raise ContainerError(f"--filter {f!r}: want KEY=VALUE, KEY one of "
                                 f"{', '.join(FILTER_KEYS)}")
    recs = sorted(Records(args.root).all(), key=lambda r: r.get("Created", ""), reverse=True)
    last = 1 if args.latest else args.last
    out = []
    for rec in recs:
        st = status(rec)
        if st not in ("running", "paused", "restarting") and not (args.all or last is not None
                                                                   or args.filter):
            continue
        if _match(rec, st, args.filter or []):
            out.append(row(rec, args.no_trunc))
    if last is not None and last >= 0:
        out = out[:last]
    if args.quiet:
        for r in out:
            print(r["ID"])
        return 0
    from imagetool.run.formatting import print_rows
    print_rows(args.format or DEFAULT, out, HEADERS)
    return 0


def register(verb: Any) -> None:
    sp = verb("ps", cmd_ps, "list containers (running ones; -a for all)")
    sp.add_argument("-a", "--all", action="store_true", help="also stopped and created ones")
    sp.add_argument("-q", "--quiet", action="store_true", help="only the container IDs")
    sp.add_argument("-n", "--last", type=int, metavar="N",
                    help="the N newest containers, in any state")
    sp.add_argument("-l", "--latest", action="store_true", help="the newest container")
    sp.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                    help="status=, name=, id=, ancestor=, exited= (repeatable)")
    sp.add_argument("--no-trunc", action="store_true", help="whole IDs and commands")
    sp.add_argument("--format", metavar="FORMAT",
                    help="table, json (one object a line) or a Go template ({{.ID}} ...)")
