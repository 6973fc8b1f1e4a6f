"""`volume create|ls|rm|inspect|prune` and `cp`, over volumes.py and cp.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagetool.run import volumes
from imagetool.run.containers import ContainerError, Records
from imagetool.run.formatting import print_rows


def cmd_volume_create(args: argparse.Namespace) -> int:
    labels = {}
    for item in args.label or []:
        k, _, v = item.partition("=")
        labels[k] = v
    print(volumes.create(args.root, args.name, labels))
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    names = volumes.names(args.root)
    if args.quiet:
        for n in names:
            print(n)
        return 0
    rows = [{"Driver": "local", "Name": n, "Mountpoint": volumes.inspect(args.root, n)
             ["Mountpoint"], "Scope": "local", "Labels": ""} for n in names]
    print_rows(args.format or "table {{.Driver}}\t{{.Name}}", rows,
               {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                "Scope": "SCOPE", "Labels": "LABELS"})
    return 0


def cmd_volume_rm(args: argparse.Namespace) -> int:
    rc = 0
    for n in args.names:
        try:
            volumes.remove(args.root, n, args.force)
            print(n)
        except ContainerError as e:
            print(f"imagetool: volume rm: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    from imagetool.run.formatting import print_docs
    print_docs([volumes.inspect(args.root, n) for n in args.names], args.format)
    return 0


def cmd_volume_prune(args: argparse.Namespace) -> int:
    print("Deleted Volumes:")
    for n in volumes.prune(args.root, args.all):
        print(n)
    print("\nTotal reclaimed space: 0B")
    return 0


def _split(text: str) -> tuple[str | None, str]:
    """CONTAINER:PATH -> (container, path); a host path -> (None, path)."""
    if text.startswith("/") or text.startswith(".") or text == "-":
        return None, text
    name, sep, path = text.partition(":")
    return (name, path) if sep else (None, text)


def cmd_cp(args: argparse.Namespace) -> int:
    from imagetool.run import cp
    recs = Records(args.root)
    (sc, sp), (dc, dp) = _split(args.src), _split(args.dest)
    if (sc is None) == (dc is None):
        raise ContainerError("cp: exactly one of SRC and DEST must be CONTAINER:PATH")
    if sc is not None:
        cid = recs.resolve(sc)
        cp.copy_out(recs, cid, sp or "/", sys.stdout.buffer if dp == "-" else dp)
    else:
        assert dc is not None
        cid = recs.resolve(dc)
        cp.copy_in(recs, cid, sys.stdin.buffer if sp == "-" else sp, dp or "/")
    return 0


def register(verb: Any) -> None:
    sp = verb("volume-create", cmd_volume_create, "make a named volume (`volume create`)")
    sp.add_argument("name", nargs="?", metavar="NAME", help="default: a random one")
    sp.add_argument("--label", action="append", metavar="K=V", help="repeatable")
    sp = verb("volume-ls", cmd_volume_ls, "list volumes (`volume ls`)")
    sp.add_argument("-q", "--quiet", action="store_true", help="only the names")
    sp.add_argument("--format", metavar="FORMAT", help="table, json or a Go template")
    sp = verb("volume-rm", cmd_volume_rm, "remove volumes no container uses (`volume rm`)")
    sp.add_argument("names", nargs="+", metavar="VOLUME", help="volume names")
    sp.add_argument("-f", "--force", action="store_true", help="even when in use")
    sp = verb("volume-inspect", cmd_volume_inspect, "describe volumes (`volume inspect`)")
    sp.add_argument("names", nargs="+", metavar="VOLUME", help="volume names")
    sp.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template per volume")
    sp = verb("volume-prune", cmd_volume_prune, "remove unused anonymous volumes "
              "(`volume prune`)")
    sp.add_argument("-a", "--all", action="store_true", help="named ones too")
    sp.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    sp = verb("cp", cmd_cp, "copy files between a container and the host")
    sp.add_argument("src", metavar="SRC", help="CONTAINER:PATH, a host path, or - (a tar)")
    sp.add_argument("dest", metavar="DEST", help="CONTAINER:PATH, a host path, or - (a tar)")
