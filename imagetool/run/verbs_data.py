"""`volume create|ls|rm|inspect|prune` and `cp`, over volumes.py and cp.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagetool.run.records import ContainerError, Records


def cmd_volume_create(args: argparse.Namespace) -> int:
    from imagetool.run import volumes
    labels = {}
    for item in args.label or []:
        k, _, v = item.partition("=")
        labels[k] = v
    print(volumes.create(args.root, args.name, labels))
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    from imagetool.run import volumes
    names = volumes.names(args.root)
    if args.quiet:
        for n in names:
            print(n)
        return 0
    from imagetool.run.formatting import print_rows
    rows = [{"Driver": "local", "Name": n, "Mountpoint": volumes.inspect(args.root, n)
             ["Mountpoint"], "Scope": "local", "Labels": ""} for n in names]
    print_rows(args.format or "table {{.Driver}}\t{{.Name}}", rows,
               {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                "Scope": "SCOPE", "Labels": "LABELS"})
    return 0


def cmd_volume_rm(args: argparse.Namespace) -> int:
    from imagetool.run import volumes
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
    from imagetool.run import volumes
    from imagetool.run.formatting import print_docs
    print_docs([volumes.inspect(args.root, n) for n in args.names], args.format)
    return 0


def cmd_volume_prune(args: argparse.Namespace) -> int:
    from imagetool.run import volumes
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


def cmd_diff(args: argparse.Namespace) -> int:
    from imagetool.run import fsops
    recs = Records(args.root)
    for line in fsops.diff(recs, recs.resolve(args.container)):
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from imagetool.atomicfile import atomic_file
    from imagetool.run import fsops
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    if args.output and args.output != "-":
        with atomic_file(args.output) as f:
            fsops.export(recs, cid, f)
        return 0
    if sys.stdout.isatty():
        raise ContainerError("export: refusing to write a tar to a terminal; use -o FILE")
    sys.stdout.flush()
    fsops.export(recs, cid, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    import contextlib

    from imagetool.run import control, fsops
    from imagetool.run.records import status
    from imagetool.store import Store
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    paused = False
    if args.pause and status(recs.load(cid)) == "running":
        control.pause(recs, cid)
        paused = True
    try:
        print(fsops.commit(Store(args.root), recs, cid, args.name, args.message or "",
                           args.author or ""))
    finally:
        if paused:
            with contextlib.suppress(ContainerError):
                control.resume(recs, cid)
    return 0


def register_fs(verb: Any) -> None:
    sp = verb("diff", cmd_diff, "what a container changed in its filesystem (A, C, D)")
    sp.add_argument("container", help="container name or id")
    sp = verb("export", cmd_export, "a tar of a container's filesystem")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("-o", "--output", metavar="FILE", help="default stdout")
    sp = verb("commit", cmd_commit, "a new image from a container's changes")
    sp.add_argument("container", help="container name or id")
    sp.add_argument("name", nargs="?", metavar="REPOSITORY[:TAG]",
                    help="the new image's name (default: a <none> image)")
    sp.add_argument("-m", "--message", help="the history comment")
    sp.add_argument("-a", "--author", help="the image's author")
    sp.add_argument("-p", "--pause", action=argparse.BooleanOptionalAction, default=True,
                    help="pause the container while committing (default)")
